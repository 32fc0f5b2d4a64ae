"""A prediction into files on the CT's geometry, apart from predicting (as nnU-Net's
export_prediction is): the labelmap or Slicer segmentation, the probability, each gate's
attention map and the summary, all or nothing.

`export_prediction` takes any core.pipeline.Prediction (labelmap on the CT's grid, maps on their
own grids or the CT's), whoever made it: the pipeline, a cohort stage, an interactive worker. The
writer for each kind of file is chosen here and nowhere else (`write_labelmap`, `write_map`); the
file types themselves are named in files/formats.py. Output names are checked before any work
(`plan_case_targets`, `plan_cohort_folders`).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import SimpleITK as sitk

from ..core.errors import InputError, PathLike
from ..core.labels import LabelInfo
from ..files.attention import attention_file_name
from ..files.formats import MAP_TYPES, is_segmentation_file
from ..files.segfile import write_seg_nrrd
from ..files.writing import atomic_output, check_output_path, labelmap_as_uint8, write_image
from .options import OutputOptions


@dataclass(frozen=True)
class OutputTargets:
    """Every file one case writes (None: not asked for)."""

    labels: Path
    probabilities: Optional[Path] = None
    attention_dir: Optional[Path] = None
    summary: Optional[Path] = None
    map_format: str = MAP_TYPES[0]


# --------------------------------------------------------------------------- format dispatch


def write_labelmap(labelmap: sitk.Image, path: PathLike, labels: list[LabelInfo]) -> None:
    """``.seg.nrrd``: a Slicer segmentation with names, colours and terminology; any other image
    type: a uint8 labelmap. Atomic."""
    if is_segmentation_file(path):
        write_seg_nrrd(labelmap, path, labels)
    else:
        write_image(labelmap_as_uint8(labelmap), path, compress=True)


def write_map(image: sitk.Image, path: PathLike, map_format: str) -> None:
    """A float map (attention, probability). NRRD is the fast path the Slicer module reads back at
    once, so it is not compressed; NIfTI is gzipped. Atomic."""
    write_image(image, path, compress=map_format != "nrrd")


# --------------------------------------------------------------------------- planning


def check_folder(folder: PathLike, option: str) -> Path:
    """A folder that exists or can be created; checked now, created only once results exist."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(path, f"is a file; {option} needs a folder")
    if not path.exists() and not path.parent.is_dir():
        raise InputError(path, "its parent folder does not exist")
    return path


def plan_case_targets(outputs: OutputOptions, ct_path: Path) -> OutputTargets:
    """Every file a single-case run will write, checked before any work is done."""
    labels = check_output_path(outputs.labels, inputs=[ct_path])
    probabilities = None if outputs.probabilities is None else check_output_path(outputs.probabilities,
                                                                                 inputs=[ct_path])
    summary = None if outputs.summary is None else check_output_path(outputs.summary, inputs=[ct_path],
                                                                     extensions=(".json",))
    attention_dir = None if outputs.attention_dir is None else check_folder(outputs.attention_dir,
                                                                            "--attention-dir")
    names = [str(p.resolve()) for p in (labels, probabilities, summary) if p is not None]
    if len(set(names)) != len(names):
        raise InputError(outputs.labels, "two outputs would be written to the same file")
    return OutputTargets(labels, probabilities, attention_dir, summary, outputs.attention_format)


@dataclass(frozen=True)
class CohortFolders:
    labels: Path
    probabilities: Optional[Path]
    attention: Optional[Path]

    def targets(self, case_name: str, outputs: OutputOptions) -> OutputTargets:
        """One case's files inside the cohort's folders (its summary goes into the cohort's)."""
        return OutputTargets(
            labels=self.labels / f"{case_name}.{outputs.cohort_type}",
            probabilities=None if self.probabilities is None else self.probabilities / f"{case_name}.nii.gz",
            attention_dir=None if self.attention is None else self.attention / case_name,
            map_format=outputs.attention_format)


def plan_cohort_folders(outputs: OutputOptions) -> CohortFolders:
    """The cohort's folders, checked before any work and created now (cheap; a cohort writes case
    by case, so there is no all-or-nothing across cases)."""
    if outputs.summary is not None and not str(outputs.summary).lower().endswith(".json"):
        raise InputError(outputs.summary, "has an unsupported output type; use .json")
    folders = CohortFolders(
        check_folder(outputs.labels, "-o (several CTs)"),
        None if outputs.probabilities is None else check_folder(outputs.probabilities, "--probabilities (several CTs)"),
        None if outputs.attention_dir is None else check_folder(outputs.attention_dir, "--attention-dir"))
    for folder in (folders.labels, folders.probabilities, folders.attention):
        if folder is not None:
            folder.mkdir(exist_ok=True)
    return folders


# --------------------------------------------------------------------------- export


def export_prediction(prediction, targets: OutputTargets, summary: Optional[dict] = None) -> float:
    """Write every output of one case, all or nothing; returns the seconds spent writing images.

    Every file goes to a temporary name first; the renames happen together at the end. With a
    `summary` and a summary target, the summary gets its `write` and `total` seconds and is
    written last, in the same all-or-nothing step.
    """
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        def temporary(path: Path) -> Path:
            return stack.enter_context(atomic_output(path))

        write_labelmap(prediction.labelmap, temporary(targets.labels), prediction.labels)
        if targets.probabilities is not None and prediction.probabilities is not None:
            write_image(prediction.probabilities, temporary(targets.probabilities))
        if prediction.attention and targets.attention_dir is not None:
            targets.attention_dir.mkdir(parents=True, exist_ok=True)
            for name, attention in prediction.attention.items():
                target = targets.attention_dir / attention_file_name(name, targets.map_format)
                write_map(attention, temporary(target), targets.map_format)
        seconds = time.perf_counter() - t0
        if summary is not None:
            summary["seconds"]["write"] = seconds
            summary["seconds"]["total"] = sum(v for k, v in summary["seconds"].items() if k != "total")
            if targets.summary is not None:
                temporary(targets.summary).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return seconds
