"""What a segmentation run produced, read from the `segment` command's files or computed in process.

The labelmap is on the CT's grid; each attention map keeps the grid it was written on (the CT's,
or its gate's own coarser grid with exact geometry): the scene places it in physical space.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import SimpleITK as sitk

#: Result files of the `segment` command inside a job's work folder.
INPUT_FILE = "input.nrrd"
LABELS_FILE = "labels.nrrd"
ATTENTION_DIR = "attention"
SUMMARY_FILE = "summary.json"


@dataclass
class SegmentationOutput:
    """What a run produced."""

    labelmap: sitk.Image                         # uint8, on the input CT's grid
    attention: dict[str, sitk.Image]             # gate name -> float32 0..1, on any grid
    labels: list[dict[str, Any]]                 # {"value", "name", "color" (0..1), "terminology"}
    summary: dict[str, Any] = field(default_factory=dict)


def default_labels() -> list[dict[str, Any]]:
    from ..core.labels import PANCREAS

    return [PANCREAS.to_dict()]


def load_output_files(work_dir: os.PathLike | str) -> SegmentationOutput:
    """Read what `segment` wrote into a job folder (labels, attention_<gate>.nrrd, summary)."""
    folder = Path(work_dir)
    summary: dict[str, Any] = {}
    if (folder / SUMMARY_FILE).exists():
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    labelmap = sitk.ReadImage(str(folder / LABELS_FILE))
    if labelmap.GetPixelID() != sitk.sitkUInt8:
        labelmap = sitk.Cast(labelmap, sitk.sitkUInt8)
    from ..files.attention import read_attention_maps

    attention = read_attention_maps(folder / ATTENTION_DIR, summary.get("gates") or None)
    return SegmentationOutput(labelmap, attention, summary.get("labels") or default_labels(), summary)


def run_segmentation_in_process(image: sitk.Image, model_path: Optional[os.PathLike | str] = None,
                                device: str = "auto", overlap: float = 0.5,
                                point_ras: Optional[Sequence[float]] = None,
                                progress: Optional[Callable[[float, str], None]] = None,
                                cancel: Optional[Callable[[], bool]] = None,
                                attention_grid: str = "model") -> SegmentationOutput:
    """The same computation as `SegmentationJob`, synchronously in this process (imports torch).

    For scripts, benchmarks and tests; the GUI uses the background job so Slicer stays usable
    (and never imports torch). `attention_grid`: "model" (each gate's own grid, what the job's
    `segment` command writes by default) or "ct"; ignored by a core without that option.
    """
    from ..core.options import MapOptions, RegionOptions, SegmentationOptions, WindowOptions
    from ..core.pipeline import segment_image
    from ..files.modelfile import default_model_path, load_model

    path = Path(model_path) if model_path else default_model_path()
    model, spec = load_model(path, device="cpu")
    options = SegmentationOptions(WindowOptions(overlap=overlap, device=device),
                                  RegionOptions(point_ras=point_ras),
                                  maps=MapOptions(attention=True, attention_grid=attention_grid))
    result = segment_image(image, model, spec, options, progress=progress, cancel=cancel)
    summary = {
        "labels": [label.to_dict() for label in result.labels],
        "volume_ml": result.volume_ml(),
        "seconds": dict(result.seconds),
        "device": result.inference.device,
        "precision": result.inference.precision,
        "gates": sorted(result.attention),
        "model": {"path": str(path), "architecture": spec.architecture, "description": spec.description},
    }
    return SegmentationOutput(result.labelmap, dict(result.attention), summary["labels"], summary)
