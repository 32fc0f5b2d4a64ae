"""`attention-unet-segment demo`: the whole product on one synthetic phantom, offline.

Generates a phantom CT (a seed never used for training), segments it with the bundled model,
writes the CT, the ground truth, the labelmap, the Slicer `.seg.nrrd`, every gate's attention map
and a PNG figure, and prints the Dice against the phantom's truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, PathLike
from ..core.options import WindowOptions

# Held-out seeds: training recipes use seeds below 10000 (see README, "Bundled default model").
DEFAULT_DEMO_SEED = 10000


def _canonical_array(image: sitk.Image) -> np.ndarray:
    """(z, y, x) array in LPS-aligned orientation, the convention the figure assumes."""
    from ..core.geometry import to_canonical

    return sitk.GetArrayFromImage(to_canonical(image))


def run_demo(output: PathLike = "demo-output", seed: int = DEFAULT_DEMO_SEED, model_file: Optional[PathLike] = None,
             window: Optional[WindowOptions] = None, fast: bool = False, progress: str = "bar",
             vary: bool = False) -> int:
    """Write every output for one phantom into `output` and print the Dice; returns the exit code.

    `vary=False` (default): the phantom family the bundled model was trained on (one
    portal-venous template, as `phantom --no-variation`); `vary=True` adds the per-case contrast
    phase, fatty pancreas, coverage and stomach filling that the bundled model has never seen.
    """
    from ..core.geometry import to_canonical
    from ..core.options import MapOptions, SegmentationOptions
    from ..evaluation.metrics import dice
    from ..files.attention import attention_file_name
    from ..files.writing import write_image
    from ..phantom.generator import FAST_SETTINGS, generate_case
    from ..service.contract import make_progress
    from ..service.export import write_labelmap, write_map
    from ..service.segmenter import load_segmentation_model, segment_image
    from .figures import FiguresUnavailable, segmentation_figure

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if not out.parent.exists():
        raise InputError(out, "its parent folder does not exist")
    model = load_segmentation_model(model_file)
    spec = model.spec

    print(f"Generating phantom (seed {seed}) ...", flush=True)
    case = generate_case(seed, vary=vary, **(FAST_SETTINGS if fast else {}))
    ct, truth = case.ct, case.labels
    # The figure draws every map over the CT's slices: the maps on the CT's grid.
    options = SegmentationOptions(window or WindowOptions(), maps=MapOptions(attention_grid="ct"))
    result = segment_image(ct, model, options, progress=make_progress(progress))

    predicted = sitk.GetArrayViewFromImage(result.labelmap) == 1
    true_mask = sitk.GetArrayViewFromImage(truth) == 1
    score = dice(predicted, true_mask)

    out.mkdir(exist_ok=True)
    (out / "attention").mkdir(exist_ok=True)
    write_image(ct, out / "ct.nii.gz")
    write_image(truth, out / "truth.nii.gz")
    write_labelmap(result.labelmap, out / "pancreas.nii.gz", result.labels)
    write_labelmap(result.labelmap, out / "pancreas.seg.nrrd", result.labels)
    for name, attention in result.attention.items():
        write_map(attention, out / "attention" / attention_file_name(name, "nii.gz"), "nii.gz")
    # to_canonical only permutes/flips axes, so the spacing follows the same permutation.
    canonical = to_canonical(ct)
    written = "ct.nii.gz truth.nii.gz pancreas.nii.gz pancreas.seg.nrrd attention/ figure.png summary.json"
    try:
        segmentation_figure(
            out / "figure.png", sitk.GetArrayFromImage(canonical), tuple(reversed(canonical.GetSpacing())),
            _canonical_array(result.labelmap),
            {name: _canonical_array(image) for name, image in result.attention.items()},
            truth_zyx=_canonical_array(truth),
        )
    except FiguresUnavailable as missing:  # every other output is still written
        print(f"warning: no figure.png ({missing})", file=sys.stderr)
        written = written.replace(" figure.png", "")
    volumes = result.volume_ml()
    truth_ml = float(true_mask.sum()) * float(np.prod(ct.GetSpacing())) / 1000.0
    summary = {
        "seed": seed, "dice": score, "predicted_ml": volumes, "truth_ml": truth_ml,
        "seconds": result.seconds, "device": result.inference.device, "model": str(model.path),
        "model_description": spec.description,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"Dice vs phantom truth: {score:.3f}  (pancreas {volumes.get('Pancreas', 0):.1f} mL predicted, "
          f"{truth_ml:.1f} mL true; {result.seconds['total']:.1f} s on {result.inference.device})")
    print(f"Wrote {out}/: {written}")
    if spec.training.get("synthetic", True):
        print("Note: this model was trained on synthetic phantoms, for demonstration; not for clinical use.",
              file=sys.stderr)
    return 0
