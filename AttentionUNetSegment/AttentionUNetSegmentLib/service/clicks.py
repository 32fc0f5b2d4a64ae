"""Segmenting from the user's clicks with a click-conditioned model, for every caller (the
command line replays a list of clicks; the Slicer worker answers them one by one).

A click-conditioned model answers the clicks in their order (core.interactive.InteractiveSession:
the result after click k depends on clicks 1..k only), so a list given at once and the same
clicks given one by one give the same segmentation. Its maps lie on the grids they were computed
on; with `--attention-grid ct` / `--probability-grid ct` they are resampled onto the CT's.
"""

from __future__ import annotations

from typing import Optional, Sequence

import SimpleITK as sitk

from ..core.errors import CancelledError, InputError
from ..core.modelspec import ModelSpec
from ..core.options import Click, ClickRegionOptions, SegmentationOptions
from ..core.pipeline import SegmentationResult
from ..core.progress import CancelCallback, ProgressCallback


def check_clicks_suit(spec: ModelSpec, clicks: Sequence[Click]) -> None:
    """One line when the clicks cannot be used by this model; nothing otherwise."""
    if spec.interactive:
        if not clicks:
            raise InputError(None, "this click-conditioned model segments where you click: give at least one "
                                   "--point=R,A,S on the structure (or use a model without click channels)")
        if not clicks[0].include:
            raise InputError(None, "the first click must be an include click (--point), on the structure")
    elif len(clicks) > 1 or any(not c.include for c in clicks):
        raise InputError(None, "this model has no click channels: it takes one --point (the cube around it is "
                               "segmented); several clicks and --exclude-point need a click-conditioned model "
                               "(the bundled one is used when no --model is given)")


def new_session(image: sitk.Image, model, options: SegmentationOptions):
    """A session on `image` (preprocessed once) with the run's device, precision and maps."""
    from ..core.interactive import InteractiveSession

    return InteractiveSession(image, model.network, model.spec, options.window, options.maps, ClickRegionOptions())


def on_requested_grids(result: SegmentationResult, options: SegmentationOptions) -> SegmentationResult:
    """The session's maps, resampled onto the CT's grid where the options ask for it."""
    def on_ct(image: sitk.Image) -> sitk.Image:
        return sitk.Resample(image, result.labelmap, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)

    if options.maps.attention_grid == "ct":
        result.attention = {name: on_ct(image) for name, image in result.attention.items()}
    if options.maps.probability_grid == "ct" and result.probabilities is not None:
        result.probabilities = on_ct(result.probabilities)
    return result


def segment_with_clicks(image: sitk.Image, model, options: SegmentationOptions,
                        progress: Optional[ProgressCallback] = None,
                        cancel: Optional[CancelCallback] = None) -> SegmentationResult:
    """The segmentation after every click of `options.region.clicks`, in order."""
    clicks = options.region.clicks
    if progress is not None:
        progress(0.0, "Resampling to the model's spacing")
    session = new_session(image, model, options)
    result, seconds = None, {}
    for k, click in enumerate(clicks, start=1):
        if cancel is not None and cancel():
            raise CancelledError("cancelled")
        result = session.add_click(click.point_ras, click.include)
        for stage, value in result.seconds.items():  # the whole replay, not its last click
            seconds[stage] = seconds.get(stage, 0.0) + value
        if progress is not None:
            progress(k / len(clicks), f"Click {k}/{len(clicks)}")
    result.seconds = seconds
    return on_requested_grids(result, options)
