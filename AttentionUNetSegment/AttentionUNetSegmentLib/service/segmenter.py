"""Segment a case and export it: the one entry point for the command line, the cohort runner,
Slicer's in-process path and any other caller.

    load_segmentation_model(path)          a model file or folder, or the bundled default
    segment_image(image, model, options)   a CT in memory -> core.pipeline.SegmentationResult
    segment_file(ct, targets, model, ...)  read, segment, export (all or nothing) -> the summary

`run.run_request` runs a whole `segment` request (one CT, or a cohort through cohort.py) with these.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import SimpleITK as sitk
import torch

from ..core.errors import InputError, PathLike
from ..core.modelspec import ModelSpec
from ..core.options import SegmentationOptions
from ..core.pipeline import SegmentationResult
from ..core.progress import CancelCallback, ProgressCallback
from .contract import case_summary
from .export import OutputTargets, export_prediction


@dataclass
class LoadedModel:
    """A network ready to segment, what it is (its model file's description) and where it came from."""

    network: torch.nn.Module
    spec: ModelSpec
    path: Path


def load_segmentation_model(path: Optional[PathLike] = None, clicks: bool = False) -> LoadedModel:
    """The model file or folder at `path`, or (None) the bundled model for a run without clicks
    or, with `clicks`, the bundled click-conditioned model."""
    from ..files.modelfile import load_model
    from ..files.resources import default_model_path

    model_path = Path(path) if path else default_model_path(clicks=clicks)
    if path is None and not model_path.exists():
        raise InputError(model_path, "bundled model is missing; reinstall, or pass --model MODEL")
    network, spec = load_model(model_path)
    return LoadedModel(network, spec, model_path)


def segment_image(image: sitk.Image, model: LoadedModel, options: Optional[SegmentationOptions] = None,
                  progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelCallback] = None) -> SegmentationResult:
    """A CT in memory (HU, any orientation) -> labels on its grid and the maps asked for.

    A click-conditioned model answers every click in order (clicks.py); a model without click
    channels segments the whole CT, or the cube around one include click."""
    from ..core.pipeline import segment_image as run_pipeline
    from .clicks import check_clicks_suit, segment_with_clicks

    options = options or SegmentationOptions()
    check_clicks_suit(model.spec, options.region.clicks)
    if model.spec.interactive:
        return segment_with_clicks(image, model, options, progress, cancel)
    return run_pipeline(image, model.network, model.spec, options, progress, cancel)


def read_case(ct_path: Path) -> tuple[sitk.Image, float]:
    """(the CT, seconds to read it); a scan that does not look like a CT in HU is said in a line."""
    from ..files.reading import check_ct_like, read_ct

    t0 = time.perf_counter()
    image = read_ct(ct_path)
    seconds = time.perf_counter() - t0
    for warning in check_ct_like(image, ct_path):
        print(f"warning: {warning}", file=sys.stderr)
    return image, seconds


def named_after(error: InputError, ct_path: PathLike) -> InputError:
    """A problem found in the data (a volume too small, a point outside it) names its file."""
    return error if error.path is not None else InputError(ct_path, error.problem)


def warn_if_empty(ct_path: Path, volumes: dict[str, float]) -> None:
    empty = [name for name, ml in volumes.items() if ml <= 0.0]
    if empty:  # not an error (the files are valid), but a radiologist must not miss it
        print(f"warning: {ct_path.name}: nothing was found for {', '.join(empty)}; the segment is empty "
              "(the model may not suit this scan)", file=sys.stderr)


def segment_file(ct_path: Path, targets: OutputTargets, model: LoadedModel, options: SegmentationOptions,
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCallback] = None) -> dict:
    """Read one CT, segment it, write every target (all or nothing); returns its summary."""
    image, read_seconds = read_case(ct_path)
    try:
        result = segment_image(image, model, options, progress, cancel)
    except InputError as error:
        raise named_after(error, ct_path) from error
    seconds = {"read": read_seconds, **{k: v for k, v in result.seconds.items() if k != "total"}}
    summary = case_summary(ct_path, result, model.path, model.spec, seconds)
    export_prediction(result, targets, summary)
    warn_if_empty(ct_path, summary["volume_ml"])
    return summary
