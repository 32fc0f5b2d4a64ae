"""One CT in, one segmentation (plus probabilities and attention maps) out, on the CT's own grid.

    input CT (any orientation/spacing)
      -> [optional] crop a cube around the clicked point          (click-to-segment)
      -> canonical orientation, model spacing, HU normalisation   (preprocessing.preprocess)
      -> sliding-window network: logits + every gate's attention  (inference)
      -> probabilities and attention resampled onto the input grid, argmax  (exact inverse)
      -> connected components / hole filling, pasted back into the full grid

Everything returned lies exactly on the input image's grid (size, spacing, origin, direction).
Arrays are (z, y, x), SimpleITK order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

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
from .preprocessing import preprocess, restore_to_input

ProgressCallback = Callable[[float, str], None]
CancelCallback = Callable[[], bool]


@dataclass
class SegmentationOptions:
    overlap: float = 0.5
    batch_size: int = 2
    device: str = "auto"
    precision: str = "auto"
    point_ras: Optional[tuple[float, float, float]] = None  # click-to-segment, Slicer RAS mm
    roi_size_mm: float = 160.0  # edge of the cube inferred around the point
    keep_largest: bool = True
    fill_holes: bool = True
    attention: bool = True
    probabilities: bool = False


@dataclass
class SegmentationResult:
    labelmap: sitk.Image  # uint8, on the input grid
    probabilities: Optional[sitk.Image]  # float32 foreground probability, on the input grid
    attention: dict[str, sitk.Image]  # float32 0..1 per gate, on the input grid
    labels: list[LabelInfo]
    inference: InferenceResult
    seconds: dict[str, float] = field(default_factory=dict)

    def volume_ml(self) -> dict[str, float]:
        """Volume of each label in millilitres (voxel count x voxel volume)."""
        voxel_ml = float(np.prod(self.labelmap.GetSpacing())) / 1000.0
        counts = np.bincount(sitk.GetArrayViewFromImage(self.labelmap).ravel())
        return {
            label.name: float(counts[label.value]) * voxel_ml if label.value < len(counts) else 0.0
            for label in self.labels
        }


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


def segment_image(
    image: sitk.Image,
    model: torch.nn.Module,
    spec: ModelSpec,
    options: Optional[SegmentationOptions] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCallback] = None,
) -> SegmentationResult:
    """Segment `image` (a CT in HU) with `model`; see the module docstring for the steps."""
    options = options or SegmentationOptions()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. Region of interest: the whole CT, or a cube around the clicked point.
    work = image
    offset_zyx = (0, 0, 0)
    point_index_zyx = None
    if options.point_ras is not None:
        point_lps = ras_to_lps(options.point_ras)
        inside = image.TransformPhysicalPointToContinuousIndex(point_lps)
        if any(not -0.5 <= i <= n - 0.5 for i, n in zip(inside, image.GetSize())):
            # Said in RAS, the coordinates the user clicked or typed.
            ras = ", ".join(f"{v:g}" for v in options.point_ras)
            raise InputError(None, f"point (R, A, S) = ({ras}) mm lies outside the CT volume")
        side = float(options.roi_size_mm)
        work = crop_around_point(image, point_lps, (side, side, side))
        # The crop keeps the input's voxel lattice, so its origin is an integer index of the input.
        offset_xyz = image.TransformPhysicalPointToIndex(work.GetOrigin())
        offset_zyx = tuple(int(v) for v in reversed(offset_xyz))
        continuous = image.TransformPhysicalPointToContinuousIndex(point_lps)
        point_index_zyx = tuple(int(round(v)) - o for v, o in zip(reversed(continuous), offset_zyx))

    # 2. Model grid: canonical orientation, model spacing, normalised intensities.
    _scaled(progress, 0.0, 0.05)(0.0, "Resampling to the model's spacing")
    pre = preprocess(work, spec.spacing_zyx, spec.intensity)
    divisor = int(getattr(model, "divisor", 16))
    _minimum_size_check(work, pre.array.shape, divisor, spec.spacing_zyx)
    seconds["preprocess"] = time.perf_counter() - t0
    _check_cancel(cancel)

    # 3. Sliding-window inference: logits (C, z, y, x) and attention maps at their own scale.
    t1 = time.perf_counter()
    inference_options = InferenceOptions(
        patch_size_zyx=tuple(spec.patch_size_zyx),
        overlap=options.overlap,
        batch_size=options.batch_size,
        device=options.device,
        precision=options.precision,
        return_attention=options.attention,
        cpu_bf16_validated=model_allows_cpu_bf16(spec.training),
    )
    inferred = sliding_window_predict(
        model, pre.array, inference_options, progress=_scaled(progress, 0.05, 0.9), cancel=cancel
    )
    seconds["inference"] = time.perf_counter() - t1
    _check_cancel(cancel)

    # 4. Exact inverse: probabilities back onto the input grid, then argmax there (not before),
    #    so boundaries are decided at the input's resolution.
    t2 = time.perf_counter()
    _scaled(progress, 0.9, 1.0)(0.0, "Resampling results onto the input grid")
    logits = torch.from_numpy(inferred.logits)
    probabilities = torch.softmax(logits.float(), dim=0).numpy()  # (C, z, y, x) on the model grid
    if probabilities.shape[0] == 2:
        # Two classes: p(foreground) > 0.5 is the argmax; restoring one channel halves the work.
        foreground = restore_to_input(probabilities[1:], pre.grid, work)[0]
        labels_zyx = (foreground > 0.5).astype(np.uint8)
    else:
        restored = restore_to_input(probabilities, pre.grid, work)
        labels_zyx = restored.argmax(axis=0).astype(np.uint8)
        foreground = 1.0 - restored[0]
    del probabilities, logits
    _check_cancel(cancel)

    labels_zyx = postprocess_labelmap(
        labels_zyx,
        keep_largest=options.keep_largest,
        fill=options.fill_holes,
        point_index_zyx=point_index_zyx,
        spacing_zyx=tuple(reversed(work.GetSpacing())),
    ).astype(np.uint8)

    # Attention: each gate's coarse grid is derived from the model grid, resampled once here.
    attention_zyx: dict[str, np.ndarray] = {}
    gate_scales = getattr(model, "gate_scales", {})
    for name, values in inferred.attention.items():
        grid = coarse_grid(pre.grid, int(gate_scales[name]))
        attention_zyx[name] = np.clip(restore_to_input(values[None], grid, work)[0], 0.0, 1.0)
    _check_cancel(cancel)

    # 5. Back into the full CT grid (no-op without a point), as SimpleITK images.
    full_shape = tuple(reversed(image.GetSize()))
    if work is not image:
        labels_zyx = _paste(full_shape, offset_zyx, labels_zyx)
        foreground = _paste(full_shape, offset_zyx, foreground.astype(np.float32))
        attention_zyx = {k: _paste(full_shape, offset_zyx, v) for k, v in attention_zyx.items()}

    result = SegmentationResult(
        labelmap=_on_grid(labels_zyx, image),
        probabilities=_on_grid(foreground.astype(np.float32), image) if options.probabilities else None,
        attention={k: _on_grid(v.astype(np.float32), image) for k, v in attention_zyx.items()},
        labels=list(spec.labels),
        inference=inferred,
        seconds=seconds,
    )
    seconds["restore"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    if progress is not None:
        progress(1.0, "Done")
    return result
