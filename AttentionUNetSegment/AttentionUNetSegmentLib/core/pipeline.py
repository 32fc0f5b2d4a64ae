"""One CT in, one segmentation (plus probabilities and attention maps) out, on the CT's own grid.

    input CT (any orientation/spacing)
      -> [optional] crop a cube around the clicked point          (click-to-segment)   } prepare()
      -> canonical orientation, model spacing, HU normalisation   (preprocessing)      }
      -> sliding-window network: logits + every gate's attention  (inference)            infer()
      -> foreground probability back onto the input grid, threshold (exact inverse)    } finish()
      -> connected components / hole filling, pasted back into the full grid          }
      -> attention (and probability) maps: on the input grid, or on their own grids   }

The labelmap always lies exactly on the input image's grid (size, spacing, origin, direction).
Each map (options.MapOptions) keeps by default the grid it was computed on ("model"), with exact
geometry: the probability on the model grid (canonical orientation, model spacing), a gate's
attention on `geometry.coarse_grid(model grid, gate scale)` -- viewers resample in physical
space, and nothing is interpolated twice; with "ct" it is resampled onto the input's grid.
The three steps are separate so that a cohort run can overlap them across cases
(service/cohort.py). What comes out is a `Prediction`, which service.export writes.
Arrays are (z, y, x), SimpleITK order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import SimpleITK as sitk
import torch

from .devices import model_allows_cpu_bf16
from .errors import CancelledError, InputError
from .geometry import coarse_grid, crop_around_point, ras_to_lps
from .inference import InferenceOptions, InferenceResult, sliding_window_predict
from .labels import LabelInfo
from .modelspec import ModelSpec
from .postprocessing import postprocess_labelmap
from .options import SegmentationOptions
from .preprocessing import PreprocessedVolume, preprocess
from .progress import CancelCallback, ProgressCallback
from .restore import box_slices, foreground_box, restore_box, restore_in_slabs



@dataclass
class Prediction:
    """A segmentation on known grids, ready to be exported (service.export): what any producer
    hands over, be it this pipeline, a cohort stage or an interactive worker."""

    labelmap: sitk.Image  # uint8, exactly on the input CT's grid
    labels: list[LabelInfo]  # what each label value means (background excluded)
    attention: dict[str, sitk.Image] = field(default_factory=dict)  # float32 0..1 per gate, any grid
    probabilities: Optional[sitk.Image] = None  # float32 foreground probability, any grid

    def volume_ml(self) -> dict[str, float]:
        """Volume of each label in millilitres (voxel count x voxel volume)."""
        voxel_ml = float(np.prod(self.labelmap.GetSpacing())) / 1000.0
        # One comparison per label, not np.bincount: that casts every voxel to int64 first
        # (1.7 GB and seconds for a 512x512x800 CT; the profile found it).
        labels = sitk.GetArrayViewFromImage(self.labelmap)
        return {label.name: float(np.count_nonzero(labels == label.value)) * voxel_ml for label in self.labels}


@dataclass
class SegmentationResult(Prediction):
    """A Prediction of this pipeline, with how it was computed."""

    inference: Optional[InferenceResult] = None  # its logits are released once restored (empty array)
    seconds: dict[str, float] = field(default_factory=dict)  # preprocess, inference, restore, postprocess


def _scaled(progress: Optional[ProgressCallback], start: float, stop: float) -> ProgressCallback:
    """Map a sub-step's 0..1 progress onto [start, stop] of the whole run."""

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(start + (stop - start) * min(max(fraction, 0.0), 1.0), message)

    return report


def _check_cancel(cancel: Optional[CancelCallback]) -> None:
    if cancel is not None and cancel():
        raise CancelledError("cancelled")


def _minimum_size_check(image: sitk.Image, grid_size_zyx: tuple[int, ...], divisor: int,
                        spacing_zyx: tuple[float, ...]) -> None:
    """Refuse volumes smaller than the network's smallest input: the bottleneck needs >= 1 voxel."""
    too_small = [
        axis for axis, n in zip("zyx", grid_size_zyx) if n < divisor
    ]
    if too_small:
        need_mm = ", ".join(f"{axis} {divisor * s:g} mm" for axis, s in zip("zyx", spacing_zyx))
        have_mm = ", ".join(
            f"{axis} {n * sp:g} mm"
            for axis, n, sp in zip("xyz", image.GetSize(), image.GetSpacing())
        )
        raise InputError(
            None,
            f"volume too small for the network ({have_mm}); it needs at least {need_mm}",
        )



def _paste(full_shape: tuple[int, int, int], offset_zyx: tuple[int, int, int],
           block: np.ndarray) -> np.ndarray:
    """Place a (z, y, x) block computed on a crop back into a zero array of the full grid."""
    full = np.zeros(full_shape, dtype=block.dtype)
    z, y, x = offset_zyx
    full[z:z + block.shape[0], y:y + block.shape[1], x:x + block.shape[2]] = block
    return full


def _on_grid(array_zyx: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.CopyInformation(reference)
    return image


@dataclass
class PreparedCase:
    """What `prepare` hands to `infer` and `finish`: the region segmented and its network input."""

    image: sitk.Image  # the whole input CT
    work: sitk.Image  # the region segmented: the CT itself, or the cube around the point
    offset_zyx: tuple[int, int, int]  # of `work` inside `image`
    point_index_zyx: Optional[tuple[int, int, int]]  # the clicked voxel, in `work`'s indices
    pre: Optional[PreprocessedVolume]  # the network input on the model grid (None once used)
    seconds: dict[str, float] = field(default_factory=dict)


def _region_of_interest(image: sitk.Image, options: SegmentationOptions):
    """(work, offset_zyx, point_index_zyx): the whole CT, or a cube around the clicked point."""
    region = options.region
    if region.point_ras is None:
        return image, (0, 0, 0), None
    point_lps = ras_to_lps(region.point_ras)
    inside = image.TransformPhysicalPointToContinuousIndex(point_lps)
    if any(not -0.5 <= i <= n - 0.5 for i, n in zip(inside, image.GetSize())):
        # Said in RAS, the coordinates the user clicked or typed.
        ras = ", ".join(f"{v:g}" for v in region.point_ras)
        raise InputError(None, f"point (R, A, S) = ({ras}) mm lies outside the CT volume")
    side = float(region.roi_size_mm)
    work = crop_around_point(image, point_lps, (side, side, side))
    # The crop keeps the input's voxel lattice, so its origin is an integer index of the input.
    offset_xyz = image.TransformPhysicalPointToIndex(work.GetOrigin())
    offset_zyx = tuple(int(v) for v in reversed(offset_xyz))
    continuous = image.TransformPhysicalPointToContinuousIndex(point_lps)
    point_index_zyx = tuple(int(round(v)) - o for v, o in zip(reversed(continuous), offset_zyx))
    return work, offset_zyx, point_index_zyx


def prepare(image: sitk.Image, model: torch.nn.Module, spec: ModelSpec,
            options: Optional[SegmentationOptions] = None) -> PreparedCase:
    """Step 1: the region to segment, on the model grid (canonical, model spacing, normalised)."""
    options = options or SegmentationOptions()
    t0 = time.perf_counter()
    work, offset_zyx, point_index_zyx = _region_of_interest(image, options)
    pre = preprocess(work, spec.spacing_zyx, spec.intensity)
    divisor = int(getattr(model, "divisor", 16))
    _minimum_size_check(work, pre.array.shape, divisor, spec.spacing_zyx)
    return PreparedCase(image, work, offset_zyx, point_index_zyx, pre,
                        {"preprocess": time.perf_counter() - t0})


def infer(case: PreparedCase, model: torch.nn.Module, spec: ModelSpec,
          options: Optional[SegmentationOptions] = None, progress: Optional[ProgressCallback] = None,
          cancel: Optional[CancelCallback] = None) -> InferenceResult:
    """Step 2: sliding-window logits (C, z, y, x) and every gate's map at its own scale."""
    options = options or SegmentationOptions()
    t0 = time.perf_counter()
    window = options.window
    inference_options = InferenceOptions(
        patch_size_zyx=tuple(spec.patch_size_zyx),
        overlap=window.overlap,
        batch_size=window.batch_size,
        device=window.device,
        precision=window.precision,
        return_attention=options.maps.attention,
        cpu_bf16_validated=model_allows_cpu_bf16(spec.training),
        context_from=1 + len(spec.labels) if spec.context_labels else None,
    )
    result = sliding_window_predict(model, case.pre.array, inference_options, progress=progress, cancel=cancel)
    case.pre.array = None  # the network input is no longer needed; free it before restoring
    case.seconds["inference"] = time.perf_counter() - t0
    return result


def _foreground_on_model_grid(logits: np.ndarray) -> np.ndarray:
    """p(not background) (z, y, x) float32 from logits (K, z, y, x), without a K-channel copy."""
    logits_t = torch.from_numpy(logits)
    if logits.shape[0] == 2:
        # softmax of two classes is the sigmoid of their difference.
        return torch.sigmoid(logits_t[1] - logits_t[0]).numpy()
    return (1.0 - torch.softmax(logits_t, dim=0)[0]).numpy()


def _labels_on_input_grid(case: PreparedCase, logits: np.ndarray, foreground: np.ndarray,
                          options: SegmentationOptions, seconds: dict[str, float]) -> np.ndarray:
    """uint8 labels (z, y, x) on `case.work`: decided at the input's resolution, then cleaned.

    Two classes: only the CT box that can exceed p = 0.5 is resampled (restore.foreground_box)
    and post-processed; the rest is background by construction. More classes: every channel
    on the whole grid, slab by slab, then argmax.
    """
    t0 = time.perf_counter()
    work, grid = case.work, case.pre.grid
    labels = np.zeros(tuple(reversed(work.GetSize())), dtype=np.uint8)
    if logits.shape[0] == 2:
        box = foreground_box(foreground, grid, work)
        if box is None:
            seconds["restore"] = time.perf_counter() - t0
            seconds["postprocess"] = 0.0
            return labels
        region = box_slices(box)
        block = (restore_box(foreground, grid, work, box) > 0.5).astype(np.uint8)
        offset_zyx = tuple(s.start for s in region)
    else:
        probabilities = torch.softmax(torch.from_numpy(logits), dim=0).numpy()
        restored = np.empty((logits.shape[0],) + labels.shape, dtype=np.float32)
        for c in range(logits.shape[0]):
            restore_in_slabs(probabilities[c], grid, work, out=restored[c])
        del probabilities
        region, block, offset_zyx = (slice(None),) * 3, restored.argmax(axis=0).astype(np.uint8), (0, 0, 0)
        del restored
    seconds["restore"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    point = case.point_index_zyx
    labels[region] = postprocess_labelmap(
        block,
        keep_largest=options.cleanup.keep_largest,
        fill=options.cleanup.fill_holes,
        point_index_zyx=None if point is None else tuple(p - o for p, o in zip(point, offset_zyx)),
        spacing_zyx=tuple(reversed(work.GetSpacing())),
    ).astype(np.uint8)
    seconds["postprocess"] = time.perf_counter() - t1
    return labels


def _map_image(values_zyx: np.ndarray, grid: sitk.Image, case: PreparedCase, on_ct: bool) -> sitk.Image:
    """A map computed on `grid`: resampled onto the input CT (pasted into it after a crop), or
    kept on `grid` (exact geometry, values untouched)."""
    if not on_ct:
        return _on_grid(np.ascontiguousarray(values_zyx, dtype=np.float32), grid)
    restored = restore_in_slabs(values_zyx, grid, case.work)
    np.clip(restored, 0.0, 1.0, out=restored)
    if case.work is not case.image:
        restored = _paste(tuple(reversed(case.image.GetSize())), case.offset_zyx, restored)
    return _on_grid(restored, case.image)


def finish(case: PreparedCase, inferred: InferenceResult, model: torch.nn.Module, spec: ModelSpec,
           options: Optional[SegmentationOptions] = None) -> SegmentationResult:
    """Step 3: labels (and the maps asked for) on the input grid; see the module docstring."""
    options = options or SegmentationOptions()
    seconds = dict(case.seconds)
    logits, inferred.logits = inferred.logits, np.empty((0, 0, 0, 0), np.float32)
    foreground = _foreground_on_model_grid(logits)
    labels_zyx = _labels_on_input_grid(case, logits, foreground, options, seconds)
    del logits
    if case.work is not case.image:
        labels_zyx = _paste(tuple(reversed(case.image.GetSize())), case.offset_zyx, labels_zyx)

    t0 = time.perf_counter()
    probabilities = None
    if options.maps.probabilities:
        probabilities = _map_image(foreground, case.pre.grid, case, options.maps.probability_grid == "ct")
    del foreground
    gate_scales = getattr(model, "gate_scales", {})
    attention = {
        # Each gate's coarse grid is derived from the model grid: resampled at most once.
        name: _map_image(values, coarse_grid(case.pre.grid, int(gate_scales[name])), case,
                         options.maps.attention_grid == "ct")
        for name, values in inferred.attention.items()
    }
    seconds["restore"] += time.perf_counter() - t0
    seconds["total"] = sum(seconds.values())
    return SegmentationResult(
        labelmap=_on_grid(labels_zyx, case.image),
        probabilities=probabilities,
        attention=attention,
        labels=list(spec.labels),
        inference=inferred,
        seconds=seconds,
    )


def segment_image(
    image: sitk.Image,
    model: torch.nn.Module,
    spec: ModelSpec,
    options: Optional[SegmentationOptions] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCallback] = None,
) -> SegmentationResult:
    """Segment `image` (a CT in HU) with `model`: prepare, infer, finish (module docstring)."""
    options = options or SegmentationOptions()
    _scaled(progress, 0.0, 0.05)(0.0, "Resampling to the model's spacing")
    case = prepare(image, model, spec, options)
    _check_cancel(cancel)
    inferred = infer(case, model, spec, options, progress=_scaled(progress, 0.05, 0.9), cancel=cancel)
    _check_cancel(cancel)
    _scaled(progress, 0.9, 1.0)(0.0, "Resampling results onto the input grid")
    result = finish(case, inferred, model, spec, options)
    if progress is not None:
        progress(1.0, "Done")
    return result
