#!/usr/bin/env python
"""How well a context-class model's organs transfer to real CT: Dice per network class.

A model trained with `train --context-classes` predicts the pancreas and, as context, the
organs around it (`segment` folds those into the background). This script keeps every class
(argmax over all of them, on the model grid) and scores each against the organ labels of the
real scans that carry them (TotalSegmentator s0009 and example, ../shared/data): it separates
"the model does not recognise real anatomy" from "the model does not recognise the pancreas".
Read-only; prints one line per class and case.

    python benchmarks/context_organs_on_real.py [--model FILE] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "AttentionUNetSegment"))

from AttentionUNetSegmentLib.core.errors import InputError  # noqa: E402
from AttentionUNetSegmentLib.core.geometry import to_canonical  # noqa: E402
from AttentionUNetSegmentLib.core.inference import InferenceOptions, sliding_window_predict  # noqa: E402
from AttentionUNetSegmentLib.core.pipeline import prepare  # noqa: E402
from AttentionUNetSegmentLib.evaluation.metrics import dice  # noqa: E402
from AttentionUNetSegmentLib.files.modelfile import default_model_path, load_model  # noqa: E402
from AttentionUNetSegmentLib.files.reading import read_ct, read_image  # noqa: E402
from AttentionUNetSegmentLib.phantom.materials import ORGAN_LABELS  # noqa: E402
from AttentionUNetSegmentLib.training.data import parse_label_map  # noqa: E402

# Phantom label names (phantom --all-organs) -> TotalSegmentator label names, where they differ.
TOTALSEGMENTATOR_NAME = {"portal_splenic_vein": "portal_vein_and_splenic_vein",
                         "vertebrae": "vertebrae_and_sacrum"}
PHANTOM_NAME = {value: name for name, value in ORGAN_LABELS.items()}
# The example's label values (../shared/data/README.md); s0009 lists its own in organs.txt.
EXAMPLE_NAMES = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach",
                 7: "pancreas"}


def _cases(data: Path):
    """(title, CT, label map, {label value: TotalSegmentator name}) per scan."""
    s0009 = data / "totalsegmentator-s0009"
    names = dict(line.split(maxsplit=1) for line in
                 (s0009 / "organs.txt").read_text(encoding="utf-8").split("\n") if line.strip())
    yield ("TotalSegmentator s0009", s0009 / "ct.nii.gz", s0009 / "organs.nii.gz",
           {int(k): v.strip() for k, v in names.items()})
    example = data / "totalsegmentator-example"
    yield ("TotalSegmentator example", example / "ct.nii.gz",
           example / "totalsegmentator_labels.nii.gz", EXAMPLE_NAMES)


def network_classes(label_mapping: str) -> dict[int, list[str]]:
    """'1:1,5:4,...' (train --labels) -> {network class: [phantom organ names it merges]}."""
    classes: dict[int, list[str]] = {}
    for source, target in parse_label_map(label_mapping).items():
        classes.setdefault(target, []).append(PHANTOM_NAME[source])
    return classes


def score_case(model, spec, classes, ct: Path, labels: Path, real_names: dict[int, str]):
    """Yield (class organs, Dice, predicted mL, true mL) for every class the real label holds."""
    case = prepare(read_ct(ct), model, spec)
    options = InferenceOptions(patch_size_zyx=tuple(spec.patch_size_zyx), return_attention=False,
                               precision="fp32")
    predicted = sliding_window_predict(model, case.pre.array, options).logits.argmax(0)  # (z, y, x)
    truth_image = sitk.Resample(to_canonical(read_image(labels)), case.pre.grid,
                                sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    real = sitk.GetArrayFromImage(truth_image)  # (z, y, x) on the model grid
    voxel_ml = float(np.prod(spec.spacing_zyx)) / 1000.0
    value_of = {name: value for value, name in real_names.items()}
    for network_class, organs in sorted(classes.items()):
        real_organs = [TOTALSEGMENTATOR_NAME.get(organ, organ) for organ in organs]
        values = [value_of[name] for name in real_organs if name in value_of]
        if not values:
            continue
        truth = np.isin(real, values)
        mine = predicted == network_class
        yield ("+".join(organs), dice(mine, truth), np.count_nonzero(mine) * voxel_ml,
               np.count_nonzero(truth) * voxel_ml)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    try:
        return _report(args.model, args.data)
    except InputError as error:  # one line naming the file and the problem, as the CLI does
        print(error, file=sys.stderr)
        return 2
    except OSError as error:  # organs.txt missing or unreadable: --data is not ../shared/data
        print(f"{error.filename}: {error.strerror}", file=sys.stderr)
        return 2


def _report(model_path: Path, data: Path) -> int:
    model, spec = load_model(model_path)
    if not spec.context_labels:
        print(f"{model_path}: this model has no context classes (train --context-classes)", file=sys.stderr)
        return 2
    classes = network_classes(spec.training["labels"])
    for title, ct, labels, real_names in _cases(data):
        print(f"{title} (model grid, argmax over all {spec.n_network_classes} classes)")
        for organs, score, found, true in score_case(model, spec, classes, ct, labels, real_names):
            print(f"  {organs:48s} Dice {score:.3f}   found {found:7.1f} mL   true {true:7.1f} mL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
