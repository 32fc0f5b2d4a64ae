"""What a segmentation run produced, read from the `segment` command's files or computed in process.

The labelmap is on the CT's grid; each attention map keeps the grid it was written on (the CT's,
or its gate's own coarser grid with exact geometry): the scene places it in physical space.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from ..core.options import DEFAULT_OVERLAP, MAP_GRIDS
from ..service.contract import ATTENTION_DIR, LABELS_FILE, SUMMARY_FILE, JobSettings, case_summary, read_summary

if TYPE_CHECKING:  # imported on first use: Slicer loads this file at start-up (through the module file)
    import SimpleITK as sitk


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
    import SimpleITK as sitk

    folder = Path(work_dir)
    summary = read_summary(folder / SUMMARY_FILE)
    labelmap = sitk.ReadImage(str(folder / LABELS_FILE))
    if labelmap.GetPixelID() != sitk.sitkUInt8:
        labelmap = sitk.Cast(labelmap, sitk.sitkUInt8)
    from ..files.attention import read_attention_maps

    attention = read_attention_maps(folder / ATTENTION_DIR, summary.get("gates") or None)
    return SegmentationOutput(labelmap, attention, summary.get("labels") or default_labels(), summary)


def run_segmentation_in_process(image: sitk.Image, model_path: Optional[os.PathLike | str] = None,
                                device: str = "auto", overlap: float = DEFAULT_OVERLAP,
                                point_ras: Optional[Sequence[float]] = None,
                                progress: Optional[Callable[[float, str], None]] = None,
                                cancel: Optional[Callable[[], bool]] = None,
                                attention_grid: str = MAP_GRIDS[0]) -> SegmentationOutput:
    """The same computation as `SegmentationJob`, synchronously in this process, through the same
    service (imports torch). For scripts, benchmarks and tests; the GUI uses the background job so
    Slicer stays usable (and never imports torch). `attention_grid`: "model" (each gate's own
    grid, what the job's `segment` command writes) or "ct". The summary has the job's keys."""
    from ..core.options import MapOptions, RegionOptions, SegmentationOptions, WindowOptions
    from ..service.segmenter import load_segmentation_model, segment_image

    settings = JobSettings(model_path, device, overlap, None if point_ras is None else tuple(point_ras))
    model = load_segmentation_model(settings.model_path)
    options = SegmentationOptions(WindowOptions(overlap=settings.overlap, device=settings.device),
                                  RegionOptions(point_ras=settings.point_ras),
                                  maps=MapOptions(attention=True, attention_grid=attention_grid))
    result = segment_image(image, model, options, progress=progress, cancel=cancel)
    summary = case_summary(None, result, model.path, model.spec, result.seconds)
    return SegmentationOutput(result.labelmap, dict(result.attention), summary["labels"], summary)
