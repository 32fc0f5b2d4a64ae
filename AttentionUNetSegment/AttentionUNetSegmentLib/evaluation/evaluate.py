"""`attention-unet-segment evaluate`: score predictions against ground truth (files or folders).

Metric definitions and empty-mask conventions are in `metrics.py`. This module finds the cases,
reads the labelmaps (NIfTI, NRRD, MHA, Slicer `.seg.nrrd`), picks the label values, checks that
each pair shares one voxel grid, and writes a per-case CSV atomically.

Folder matching, by file name (case id = name without extension and without a trailing
nnU-Net channel suffix `_0000`):

- ground truth `labelsTr/case.nii.gz` (Decathlon / nnU-Net) matches a prediction `case.nii.gz`,
  `case.seg.nrrd` or `case_0000.nii.gz` (named after the image `imagesTr/case_0000.nii.gz`);
- a Decathlon dataset root (a folder with `labelsTr/`) given as ground truth means its `labelsTr`;
- files starting with "." (macOS `._case.nii.gz` in the Decathlon archives) and non-image files
  are ignored; image files without a partner are reported, and no pair at all is an InputError.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, PathLike
from ..core.labels import LABELS_SYNTAX, parse_label_map
from ..files.formats import SEGMENTATION_EXTENSION, image_extension
from ..files.reading import read_image
from ..files.writing import atomic_output, check_output_path
from .metrics import METRIC_KEYS, evaluate_pair

CSV_COLUMNS = ("case",) + METRIC_KEYS
DEFAULT_SEGMENT_NAME = "pancreas"   # compared case-insensitively with Slicer segment names
_CHANNEL_SUFFIX = re.compile(r"_0000$")


@dataclass
class CasePair:
    """One case to evaluate: its name, the prediction file and the ground-truth file."""

    case: str
    pred: Path
    gt: Path


@dataclass
class Matching:
    """Result of `match_cases`: the pairs, and the image files left without a partner."""

    pairs: list[CasePair]
    unmatched_pred: list[Path] = field(default_factory=list)
    unmatched_gt: list[Path] = field(default_factory=list)


def _stem(path: PathLike) -> str:
    name = Path(path).name
    suffix = image_extension(name)
    return name[: len(name) - len(suffix)] if suffix else name


def case_id(path: PathLike) -> str:
    """Case name of an image file: the file name without extension and without `_0000`."""
    return _CHANNEL_SUFFIX.sub("", _stem(path))


def _image_files(folder: Path) -> dict[str, Path]:
    """Case id -> image file in `folder` (not recursive); two files for one case is an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or image_extension(path) is None:
            continue
        case = case_id(path)
        if case in found:
            raise InputError(folder, f"two files for case {case!r}: {found[case].name} and {path.name}; "
                                     "keep one of them")
        found[case] = path
    return found


def _ground_truth_folder(folder: Path) -> Path:
    """`labelsTr` of a Decathlon/nnU-Net dataset root, else the folder itself."""
    labels = folder / "labelsTr"
    if labels.is_dir() and not any(image_extension(p) for p in folder.iterdir() if p.is_file()):
        return labels
    return folder


def match_cases(pred: PathLike, gt: PathLike) -> Matching:
    """Pair prediction and ground-truth files by case id (see the module docstring).

    `pred` and `gt` may both be files (one pair, named after the prediction), both folders, or a
    prediction file and a ground-truth folder (its file with the same case id).
    """
    pred, gt = Path(pred), Path(gt)
    for path, role in ((pred, "prediction"), (gt, "ground truth")):
        if not path.exists():
            raise InputError(path, f"{role} does not exist")
    if pred.is_file() and gt.is_file():
        return Matching([CasePair(case_id(pred), pred, gt)])
    if pred.is_dir() and gt.is_file():
        raise InputError(pred, "is a folder but the ground truth is a single file; "
                               "pass one prediction file, or a ground-truth folder")
    gt_folder = _ground_truth_folder(gt)
    gt_files = _image_files(gt_folder)
    if gt_files and all(_CHANNEL_SUFFIX.search(_stem(p)) for p in gt_files.values()):
        raise InputError(gt_folder, "holds images named like nnU-Net inputs (case_0000.nii.gz), not labels; "
                                    "pass the labels folder (labelsTr) as ground truth")
    if pred.is_file():
        case = case_id(pred)
        if case not in gt_files:
            raise InputError(gt_folder, f"has no ground truth for case {case!r} ({pred.name})")
        return Matching([CasePair(case, pred, gt_files[case])])
    pred_files = _image_files(pred)
    common = sorted(set(pred_files) & set(gt_files))
    matching = Matching(
        [CasePair(case, pred_files[case], gt_files[case]) for case in common],
        unmatched_pred=[pred_files[c] for c in sorted(set(pred_files) - set(gt_files))],
        unmatched_gt=[gt_files[c] for c in sorted(set(gt_files) - set(pred_files))],
    )
    if not common:
        def examples(files: dict[str, Path]) -> str:
            names = [p.name for p in files.values()][:3]
            return ", ".join(names) + (", ..." if len(files) > 3 else "") if names else "no image files"
        raise InputError(pred, f"no prediction matches a ground-truth file in {gt_folder} by case name "
                               f"(predictions: {examples(pred_files)}; ground truth: {examples(gt_files)})")
    return matching


def _segments(image: sitk.Image) -> list[dict]:
    """Segments described in a Slicer .seg.nrrd header: name, label value, layer."""
    keys = set(image.GetMetaDataKeys())
    segments = []
    index = 0
    while f"Segment{index}_ID" in keys or f"Segment{index}_Name" in keys:
        def meta(key: str, default: str = "") -> str:
            full = f"Segment{index}_{key}"
            return image.GetMetaData(full) if full in keys else default
        try:
            value = int(meta("LabelValue", "1"))
            layer = int(meta("Layer", "0"))
        except ValueError:
            raise InputError(None, f"segment {index} has a malformed LabelValue/Layer") from None
        segments.append({"name": meta("Name", meta("ID")), "value": value, "layer": layer})
        index += 1
    return segments


def _describe(segments: list[dict]) -> str:
    return ", ".join(f"{s['name']}={s['value']}" + (f" (layer {s['layer']})" if s["layer"] else "")
                     for s in segments) or "none"


Labels = tuple[int, ...]
LabelSpec = Union[int, str, Sequence[int], None]


def parse_labels(spec: LabelSpec, option: str = "--pred-label") -> Optional[Labels]:
    """Label values to evaluate, in the one label syntax (core.labels.parse_label_map): 7, "1,2",
    "1:1,2:1" or (1, 2) -> a sorted tuple; "merge" -> () (every value > 0); None stays None.

    Several values are merged into one structure (e.g. Decathlon Task07: pancreas 1 + tumour 2),
    so a map may name one class only.
    """
    if spec is None or spec == ():   # () is "merge", already parsed
        return spec
    if isinstance(spec, str):
        mapping = parse_label_map(spec, option)
        if mapping is None:
            return ()
        if set(mapping.values()) - {0} != {1}:
            raise InputError(None, f"{option} {spec!r}: evaluation scores one structure; map its values to "
                                   "class 1 (e.g. 1:1,2:1)")
        return tuple(sorted(value for value, target in mapping.items() if target == 1))
    try:
        values = [int(spec)] if isinstance(spec, (int, np.integer)) else [int(v) for v in spec]
    except (TypeError, ValueError):
        raise InputError(None, f"{option} {spec!r}: expected {LABELS_SYNTAX}") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(None, f"{option} must be positive label values (0 is background); got {spec!r}")
    return tuple(sorted(set(values)))


def _labels_text(values: Labels) -> str:
    return ",".join(str(v) for v in values)


def read_labelmap(path: PathLike, labels: LabelSpec,
                  default: Labels = (1,)) -> tuple[sitk.Image, Labels, list[tuple[str, str]]]:
    """Read a labelmap and decide which label values to evaluate.

    `labels` are the values the user asked for (None: not given). For a Slicer `.seg.nrrd`
    without explicit values, the segment named "Pancreas" (any case) is used, else `default`;
    the segments' layer is selected when the file has several (overlapping segments). Returns
    the scalar image, the label values and notes `(message, file name)` for the user.
    """
    path = Path(path)
    requested = parse_labels(labels)
    image = read_image(path)
    notes: list[tuple[str, str]] = []
    if image_extension(path) != SEGMENTATION_EXTENSION:
        if requested == ():   # merge: every value present
            requested = tuple(int(v) for v in _present_values(image))
        return image, requested or default, notes
    try:
        segments = _segments(image)
    except InputError as error:
        raise InputError(path, error.problem) from None
    if requested == ():
        requested = tuple(sorted({s["value"] for s in segments})) or None
    named = [s for s in segments if s["name"].strip().lower() == DEFAULT_SEGMENT_NAME]
    if requested is None and named:
        # The segment itself, not every segment sharing its value: in a multi-layer file
        # another layer may reuse the same value for another structure.
        values, chosen = (named[0]["value"],), named[:1]
    else:
        values = requested or default
        chosen = [s for s in segments if s["value"] in values]
        if requested is None and segments:
            notes.append((f"no segment named Pancreas; evaluated label value {_labels_text(values)}", path.name))
    missing = [v for v in values if v not in {s["value"] for s in chosen}]
    if segments and missing:
        raise InputError(path, f"has no segment with label value {_labels_text(missing)} "
                               f"(segments: {_describe(segments)}); choose with --pred-label/--truth-label")
    layers = sorted({s["layer"] for s in chosen}) or [0]
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        if len(layers) > 1:
            raise InputError(path, f"label value {_labels_text(values)} lies in several layers {layers} "
                                   f"(segments: {_describe(segments)}); cannot tell which segment to evaluate")
        if layers[0] >= components:
            raise InputError(path, f"segment layer {layers[0]} does not exist (the file has {components} layers)")
        image = sitk.VectorIndexSelectionCast(image, layers[0])
    return image, values, notes


def _present_values(image: sitk.Image) -> list[float]:
    if image.GetNumberOfComponentsPerPixel() != 1:
        return []
    return [v for v in np.unique(sitk.GetArrayViewFromImage(image)).tolist() if v != 0]


def _shown(values: Sequence[float], limit: int = 12) -> str:
    return ", ".join(f"{v:g}" for v in values[:limit]) + (", ..." if len(values) > limit else "")


def _empty_note(image: sitk.Image, values: Labels, role: str) -> str:
    """Why a mask is empty: nothing there, or (usually) the wrong --pred-label/--truth-label."""
    present = _present_values(image)
    if not present:
        return f"{role} is empty"
    option = "--pred-label" if role == "prediction" else "--truth-label"
    return f"{role} has no voxel with label {_labels_text(values)} (values present: {_shown(present)}); check {option}"


def _multi_label_note(image: sitk.Image, values: Labels) -> Optional[str]:
    """A note when a ground truth holds several labels and --truth-label was left to default.

    TotalSegmentator files hold ~100 structures and value 1 is the spleen, and Decathlon
    Task07 has the tumour as 2, so a defaulted --truth-label scores the wrong structure or
    leaves the tumour out without any visible sign.
    """
    if image.GetNumberOfComponentsPerPixel() != 1:
        return None
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0 or array.max() <= max(values):   # cheap test before np.unique
        return None
    if not set(_present_values(image)) - set(values):
        return None
    return (f"ground truth holds other labels too; evaluated label {_labels_text(values)} only. "
            "Pass --truth-label: 7 for TotalSegmentator's pancreas, 1,2 for Decathlon Task07 pancreas + tumour")


def _group_notes(notes: Sequence[tuple[str, str]]) -> list[str]:
    """One line per distinct message, naming the files it concerns (first few)."""
    grouped: dict[str, list[str]] = {}
    for message, name in notes:
        grouped.setdefault(message, []).append(name)
    lines = []
    for message, names in grouped.items():
        files = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        lines.append(f"{message} ({files})" if len(names) == 1 else f"{message} ({len(names)} files: {files})")
    return lines


def summarize(rows: Sequence[dict]) -> dict:
    """Mean, std (sample, ddof=1; 0 for one case), median of every metric over the cases.

    Distances are summarised over the cases where they are finite; `n_inf` counts the others
    (one mask empty), so one missed case does not turn every statistic into inf.
    """
    summary: dict = {"n_cases": len(rows)}
    for key in METRIC_KEYS:
        values = np.array([float(row[key]) for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            stats = {"mean": float(finite.mean()),
                     "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                     "median": float(np.median(finite))}
        else:
            stats = {"mean": math.inf, "std": math.nan, "median": math.inf}
        summary[key] = {**stats, "n": int(finite.size), "n_inf": int(values.size - finite.size)}
    return summary


def _csv_value(value) -> str:
    if isinstance(value, str):
        return value
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6f}"


def write_csv(rows: Sequence[dict], csv_path: PathLike) -> None:
    """Per-case CSV (columns `CSV_COLUMNS`, 6 decimals, "inf" for undefined distances), atomically.

    Written through `imageio.atomic_output`, so a crash never leaves a half-written CSV behind.
    """
    with atomic_output(csv_path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row[column]) for column in CSV_COLUMNS])


def evaluate(pred: PathLike, gt: PathLike, label: LabelSpec = None, gt_label: LabelSpec = None,
             csv_path: Optional[PathLike] = None,
             on_case: Optional[Callable[[dict], None]] = None) -> tuple[list[dict], dict]:
    """Evaluate prediction file(s) against ground truth; see the module docstring for matching.

    `label`: prediction label value(s) (an int, a sequence, or the label syntax: "1,2",
    "1:1,2:1", "merge"; several are merged; None: the "Pancreas" segment of a .seg.nrrd, else 1). `gt_label`: ground-truth value(s)
    (default: `label`, else 1; e.g. 7 for TotalSegmentator's pancreas, "1,2" for Decathlon
    Task07 pancreas + tumour). Returns `(rows, summary)`: one dict per case with "case" and the
    `metrics.METRIC_KEYS` (distances in mm, volumes in mL), and the output of `summarize` plus
    `unmatched_pred`, `unmatched_gt` (file paths) and `notes` (warnings for the user, one line
    per kind). `on_case(row)` is called after each case, for progress. Writes `csv_path` if
    given (checked before any work).
    """
    label = parse_labels(label, "--pred-label")
    gt_label = parse_labels(gt_label, "--truth-label")
    matching = match_cases(pred, gt)
    if csv_path is not None:   # before the (possibly long) evaluation, not after
        csv_path = check_output_path(csv_path, extensions=(".csv",))
    gt_requested = gt_label if gt_label is not None else label
    rows: list[dict] = []
    notes: list[tuple[str, str]] = []
    for pair in matching.pairs:
        pred_image, pred_values, pred_notes = read_labelmap(pair.pred, label)
        gt_image, gt_values, gt_notes = read_labelmap(pair.gt, gt_requested)
        notes += pred_notes + gt_notes
        result = evaluate_pair(pred_image, gt_image, pred_values, gt_values, pair.pred, pair.gt)
        if gt_label is None and image_extension(pair.gt) != SEGMENTATION_EXTENSION:
            note = _multi_label_note(gt_image, gt_values)
            if note:
                notes.append((note, pair.gt.name))
        if result["pred_volume_ml"] == 0.0:
            notes.append((_empty_note(pred_image, pred_values, "prediction"), pair.pred.name))
        if result["gt_volume_ml"] == 0.0:
            notes.append((_empty_note(gt_image, gt_values, "ground truth"), pair.gt.name))
        row = {"case": pair.case, **result}
        rows.append(row)
        if on_case is not None:
            on_case(row)
    if csv_path is not None:
        write_csv(rows, csv_path)
    summary = summarize(rows)
    summary.update(unmatched_pred=[str(p) for p in matching.unmatched_pred],
                   unmatched_gt=[str(p) for p in matching.unmatched_gt], notes=_group_notes(notes))
    return rows, summary


# ----------------------------------------------------------------------------- command line

_TABLE = (("case", "case", None), ("dice", "Dice", ".4f"), ("hd95_mm", "HD95 mm", ".2f"),
          ("assd_mm", "ASSD mm", ".2f"), ("precision", "precision", ".4f"), ("recall", "recall", ".4f"),
          ("pred_volume_ml", "pred mL", ".2f"), ("gt_volume_ml", "truth mL", ".2f"))
_CASE_WIDTH = 24


def _table_line(values: Sequence[str]) -> str:
    first, rest = values[0], values[1:]
    return f"{first:<{_CASE_WIDTH}}" + "".join(f" {v:>10}" for v in rest)


def _format(value: float, spec: str) -> str:
    return "inf" if math.isinf(value) else ("nan" if math.isnan(value) else format(value, spec))


def format_header() -> str:
    """The table's title line (the columns of `format_row`)."""
    return _table_line([title for _, title, _ in _TABLE])


def format_row(row: dict) -> str:
    """One table line for a case (same columns as the CSV, rounded for reading)."""
    return _table_line([row["case"]] + [_format(row[key], spec) for key, _, spec in _TABLE[1:]])


def format_summary(summary: dict) -> list[str]:
    """Summary lines: mean ± std and median of every metric (finite values; inf cases counted)."""
    lines = [f"{summary['n_cases']} case(s): mean ± std (median)"]
    for key, title, spec in _TABLE[1:]:
        stats = summary[key]
        text = (f"{_format(stats['mean'], spec)} ± {_format(stats['std'], spec)} "
                f"({_format(stats['median'], spec)})")
        if stats["n_inf"]:
            text += f"  [over {stats['n']} case(s); {stats['n_inf']} inf: one mask empty]"
        lines.append(f"  {title:<10} {text}")
    return lines


