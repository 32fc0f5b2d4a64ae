"""Sliding-window inference: logits and every attention gate's map, stitched in one pass.

The volume (z, y, x), already normalised, is padded at its far end to a multiple of the
network's divisor (and at least one patch), cut into overlapping windows, and each window's
outputs are blended back with a Gaussian importance weight (sigma = patch/8, as nnU-Net and
MONAI do). Attention maps are stitched at their own, coarser, resolution: a gate with scale s
sees the window of size patch/s at offset start/s. Every window start is a multiple of the
divisor (16), hence of every gate scale, so each coarse voxel of a window lands exactly on a
coarse voxel of the volume (voxel i covers fine voxels s*i .. s*i+s-1, the convention of
geometry.coarse_grid) and no map is ever resampled during stitching.

Device policy: "auto" is CUDA, else MPS, else CPU. Precision "auto" is bf16 autocast on CUDA
when the GPU supports it (fp16 otherwise) and fp32 elsewhere. Stitching buffers stay on the GPU
when they fit comfortably, otherwise on the CPU. On out-of-memory the window batch is halved and
the batch retried; at batch 1 the run continues on the CPU. The network runs in eval mode with
its BatchNorm layers folded into the convolutions before them (fusion.py; a copy, the caller's
model keeps its weights, device and mode); a network without BatchNorm is moved to the device in
place and put in eval mode for the call only.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from .devices import resolve_device, resolve_precision
from .errors import CancelledError, InputError
from .fusion import folded_for_inference
from .options import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, check_batch_size, check_overlap
from .progress import CancelCallback, ProgressCallback

_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Gaussian weights are clamped from below (MONAI uses the same floor) so that voxels seen only by
# a window's border still get a finite, non-zero weight sum.
_MIN_WEIGHT = 1e-3
# Keep GPU stitching buffers below this share of the free GPU memory; the rest is for activations.
_GPU_BUFFER_SHARE = 0.5


@dataclass
class InferenceOptions:
    patch_size_zyx: tuple[int, int, int]  # multiple of model.divisor
    overlap: float = DEFAULT_OVERLAP  # fraction of the window shared (see effective_overlap)
    batch_size: int = DEFAULT_BATCH_SIZE  # windows per forward pass
    device: str = "auto"  # auto|cpu|cuda|mps (cuda:N accepted)
    precision: str = "auto"  # auto|fp32|bf16|fp16
    return_attention: bool = True
    cpu_bf16_validated: bool = False  # the model file says bf16 agrees with fp32 (devices.py)
    memory_format: str = "auto"  # auto|channels_last|contiguous: layout of windows and weights
    # Classes from this index on are context (ModelSpec.context_labels): folded into the
    # background window by window, so the stitching buffers hold only the output classes.
    context_from: Optional[int] = None


def fold_context_logits(logits: torch.Tensor, context_from: int) -> torch.Tensor:
    """(B, K, ...) -> (B, context_from, ...): classes context_from..K-1 join the background.
    The new background logit is the log-sum-exp of the old one and the context logits, so its
    softmax probability is exactly their summed probability and the other classes' are unchanged.
    Pairwise, not over a concatenated copy: one extra channel in memory, not K."""
    background = logits[:, 0]
    for channel in range(context_from, logits.shape[1]):
        background = torch.logaddexp(background, logits[:, channel])
    return torch.cat([background[:, None], logits[:, 1:context_from]], dim=1)


@dataclass
class InferenceResult:
    logits: np.ndarray  # (n_classes, z, y, x) float32 on the input grid of the call
    attention: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (ceil(z/s), ...) in [0, 1]
    device: str = "cpu"
    precision: str = "fp32"
    seconds: float = 0.0
    windows: int = 0


# --------------------------------------------------------------------------- device and precision


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def _memory_format(device: torch.device, requested: str = "auto") -> torch.memory_format:
    # Channels-last-3d lets oneDNN pick its fast 3D convolutions on the CPU: measured ~1.7x
    # faster than contiguous (0.52 s vs 0.95 s per batch of two 64^3 windows, same numbers to
    # 1e-5). On GPUs "auto" keeps the default layout until benchmarks/gpu_check.sh has measured
    # both there; "channels_last" / "contiguous" force one (benchmark_inference --memory-format).
    if requested == "channels_last":
        return torch.channels_last_3d
    if requested == "contiguous":
        return torch.contiguous_format
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def _autocast(device: torch.device, precision: str):
    dtype = _AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _is_out_of_memory(error: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, (oom_type, torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    # MPS and the CPU allocator report plain RuntimeErrors.
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


# --------------------------------------------------------------------------- window plan


def window_step(patch: int, overlap: float, divisor: int) -> int:
    """Voxels between window starts along one axis: patch * (1 - overlap), rounded DOWN to a
    multiple of the divisor (at least one divisor), so that every window start is a multiple of
    every gate scale and the coarse maps stitch exactly. The tiny epsilon keeps 96 * (1 - 0.75) =
    23.999... from rounding a step away."""
    step = int(math.floor(patch * (1.0 - overlap) + 1e-6)) // divisor * divisor
    return max(divisor, step)


def effective_overlap(patch: int, overlap: float, divisor: int) -> float:
    """The overlap the windows really have: 1 - step / patch (0.25 asked of a 96-voxel patch
    gives a step of 64, i.e. 0.33)."""
    return 1.0 - window_step(patch, overlap, divisor) / patch


def window_starts(size: int, patch: int, step: int) -> list[int]:
    """Window starts along one axis of a (padded) `size`: multiples of `step`, the last flush."""
    if size < patch:
        raise ValueError(f"size {size} is smaller than the patch {patch}; pad first")
    starts = list(range(0, size - patch + 1, step))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def plan_windows(
    shape_zyx: tuple[int, int, int], patch_zyx: tuple[int, int, int], overlap: float, divisor: int
) -> tuple[tuple[int, int, int], list[tuple[int, int, int]]]:
    """(padded shape, window starts) for a volume of `shape_zyx`.

    The padded shape is a multiple of `divisor` and at least the patch; since the patch is a
    multiple of the divisor too, the flush last window starts on a multiple of the divisor.
    """
    padded = tuple(max(math.ceil(n / divisor) * divisor, p) for n, p in zip(shape_zyx, patch_zyx))
    per_axis = [
        window_starts(n, p, window_step(p, overlap, divisor)) for n, p in zip(padded, patch_zyx)
    ]
    starts = [(z, y, x) for z in per_axis[0] for y in per_axis[1] for x in per_axis[2]]
    return padded, starts


def gaussian_importance(size_zyx: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """(z, y, x) float32 Gaussian centred on the window, sigma = size/8, max 1, floor _MIN_WEIGHT."""
    axes = []
    for n in size_zyx:
        coords = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        axes.append(torch.exp(-0.5 * (coords / (n / 8.0)) ** 2))
    weight = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weight = (weight / weight.max()).clamp_(min=_MIN_WEIGHT)
    return weight.to(device=device, dtype=torch.float32)


# --------------------------------------------------------------------------- stitching


class _WindowWeights:
    """The Gaussian of a window at full resolution and at each gate's scale, per device."""

    def __init__(self, patch_zyx: tuple[int, int, int], scales: dict[str, int]):
        self.full = gaussian_importance(patch_zyx)  # (pz, py, px)
        self.maps = {
            name: gaussian_importance(tuple(p // s for p in patch_zyx)) for name, s in scales.items()
        }  # name -> (pz/s, py/s, px/s)
        self._cache: dict[torch.device, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    def on(self, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(full, name -> map) on `device`, copied there once rather than once per batch."""
        if device not in self._cache:
            self._cache[device] = (self.full.to(device), {k: v.to(device) for k, v in self.maps.items()})
        return self._cache[device]


class _Stitcher:
    """Weighted sums and weight sums for the logits (full res) and each gate map (its own res)."""

    def __init__(
        self,
        padded_zyx: tuple[int, int, int],
        patch_zyx: tuple[int, int, int],
        n_classes: int,
        scales: dict[str, int],
        weights: _WindowWeights,
        device: torch.device,
    ):
        self.patch = patch_zyx
        self.scales = scales
        self.device = device
        self.logits = torch.zeros((n_classes, *padded_zyx), dtype=torch.float32, device=device)
        self.weight = torch.zeros(padded_zyx, dtype=torch.float32, device=device)
        self.maps = {
            name: torch.zeros(tuple(n // s for n in padded_zyx), dtype=torch.float32, device=device)
            for name, s in self.scales.items()
        }
        self.map_weight = {name: torch.zeros_like(buf) for name, buf in self.maps.items()}
        self.gaussian, self.map_gaussian = weights.on(device)

    @staticmethod
    def estimate_bytes(padded_zyx, n_classes: int, scales: dict[str, int]) -> int:
        voxels = math.prod(padded_zyx)
        coarse = sum(math.prod(n // s for n in padded_zyx) for s in scales.values())
        return 4 * ((n_classes + 1) * voxels + 2 * coarse)

    def to(self, device: torch.device, weights: _WindowWeights) -> None:
        """Move every buffer (used when the run falls back to the CPU)."""
        self.device = device
        self.logits = self.logits.to(device)
        self.weight = self.weight.to(device)
        self.maps = {k: v.to(device) for k, v in self.maps.items()}
        self.map_weight = {k: v.to(device) for k, v in self.map_weight.items()}
        self.gaussian, self.map_gaussian = weights.on(device)

    def add(
        self, starts: list[tuple[int, int, int]], logits: torch.Tensor, maps: dict[str, torch.Tensor]
    ) -> None:
        # logits: (b, K, pz, py, px) already multiplied by the Gaussian; maps: name -> (b, pz/s, ...)
        logits = logits.to(self.device)
        maps = {k: v.to(self.device) for k, v in maps.items()}
        pz, py, px = self.patch
        for i, (z, y, x) in enumerate(starts):
            self.logits[:, z:z + pz, y:y + py, x:x + px] += logits[i]
            self.weight[z:z + pz, y:y + py, x:x + px] += self.gaussian
            for name, s in self.scales.items():
                cz, cy, cx = z // s, y // s, x // s  # exact: starts are multiples of every scale
                region = (slice(cz, cz + pz // s), slice(cy, cy + py // s), slice(cx, cx + px // s))
                self.maps[name][region] += maps[name][i]
                self.map_weight[name][region] += self.map_gaussian[name]

    def finish(self, shape_zyx: tuple[int, int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Divide by the weights and crop the padding: (K, z, y, x), name -> (ceil(z/s), ...)."""
        # In place: a second full-size buffer might not fit (on the GPU in particular).
        z, y, x = shape_zyx
        self.logits.div_(self.weight)
        out = np.ascontiguousarray(self.logits[:, :z, :y, :x].cpu().numpy())
        attention = {}
        for name, s in self.scales.items():
            cz, cy, cx = (math.ceil(n / s) for n in shape_zyx)
            # A weighted mean of values in [0, 1] is in [0, 1] up to rounding: clamp that away.
            values = self.maps[name].div_(self.map_weight[name]).clamp_(0.0, 1.0)
            attention[name] = np.ascontiguousarray(values[:cz, :cy, :cx].cpu().numpy())
        return out, attention


# --------------------------------------------------------------------------- sliding window


def _check_inputs(model: nn.Module, volume_zyx, options: InferenceOptions):
    volume = np.asarray(volume_zyx)
    if volume.ndim == 3:
        volume = volume[None]  # one input channel: the CT
    if volume.ndim != 4 or min(volume.shape) < 1:
        raise InputError(None, f"expected a non-empty (z, y, x) or (C, z, y, x) volume, got shape {volume.shape}")
    volume = volume.astype(np.float32, copy=False)
    if not np.isfinite(volume).all():
        raise InputError(None, "the volume contains NaN or infinite values")
    divisor = int(getattr(model, "divisor", 1))
    patch = tuple(int(p) for p in options.patch_size_zyx)
    if len(patch) != 3 or any(p < divisor or p % divisor for p in patch):
        raise InputError(
            None,
            f"patch size (z, y, x) = {tuple(options.patch_size_zyx)} must be 3 positive multiples of {divisor}",
        )
    check_overlap(options.overlap)
    check_batch_size(options.batch_size)
    if options.memory_format not in MEMORY_FORMATS:
        raise InputError(None, f"memory format must be one of {', '.join(MEMORY_FORMATS)}, got {options.memory_format!r}")
    names = tuple(getattr(model, "gate_names", ())) if options.return_attention else ()
    scales = {name: int(model.gate_scales[name]) for name in names}
    for name, s in scales.items():
        if divisor % s:
            raise ValueError(f"gate {name}: scale {s} does not divide the model divisor {divisor}")
    return volume, divisor, patch, scales


class _WindowSource:
    """The padded volume windows are cut from: on a CUDA device when it fits (cut there, no
    host-to-device copy per batch), otherwise in host memory (pinned for CUDA transfers)."""

    def __init__(self, padded: torch.Tensor, patch_zyx: tuple[int, int, int], device: torch.device):
        self.host = padded
        self.patch = patch_zyx
        self.on_device: Optional[torch.Tensor] = None
        if device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(device)
            if padded.numel() * 4 < _GPU_BUFFER_SHARE * free:
                try:
                    self.on_device = padded.to(device)
                except Exception as error:  # noqa: BLE001
                    if not _is_out_of_memory(error):
                        raise
                    _empty_cache(device)
            if self.on_device is None:
                self.host = padded.pin_memory()

    def windows(self, starts, device: torch.device, layout: torch.memory_format) -> torch.Tensor:
        """(b, C, pz, py, px) windows at `starts`, on `device`, in `layout`."""
        pz, py, px = self.patch
        source = self.on_device if self.on_device is not None and self.on_device.device == device else self.host
        batch = torch.stack([source[:, z:z + pz, y:y + py, x:x + px] for z, y, x in starts])
        return batch.to(device, memory_format=layout, non_blocking=True)

    def drop_device_copy(self) -> None:
        self.on_device = None


def _forward(model: nn.Module, windows: torch.Tensor, scales: dict[str, int], device: torch.device,
             precision: str, weights: _WindowWeights, context_from: Optional[int] = None):
    """Gaussian-weighted logits (b, K, pz, py, px) and maps name -> (b, pz/s, py/s, px/s), float32;
    K counts the output classes only when `context_from` folds the context ones."""
    with _autocast(device, precision):
        if scales:
            logits, maps = model(windows, return_attention=True)
        else:
            logits, maps = model(windows), {}
    # Weight on the compute device, then one transfer per batch to the buffers.
    gauss, map_gauss = weights.on(device)
    logits = logits.float()
    if context_from is not None:   # before the weighting: log-sum-exp of raw logits
        logits = fold_context_logits(logits, context_from)
    logits = logits * gauss
    maps = {name: maps[name][:, 0].float() * map_gauss[name] for name in scales}
    return logits, maps


def _padded_volume(volume: np.ndarray, padded_shape: tuple[int, int, int]) -> torch.Tensor:
    # volume (C, z, y, x). Pad the far end with each channel's minimum: after HU windowing that
    # is air, so the network sees the scan's edge as air, not as mirrored or invented tissue
    # (and a click or mask channel is 0 there). Padding only the far end keeps voxel 0 at
    # offset 0 on every grid, so cropping is a plain slice.
    channels, z, y, x = volume.shape
    padded = np.empty((channels, *padded_shape), dtype=np.float32)
    for c in range(channels):
        padded[c].fill(volume[c].min())
        padded[c, :z, :y, :x] = volume[c]
    return torch.from_numpy(padded)


def sliding_window_predict(
    model: nn.Module,
    volume_zyx: np.ndarray,
    options: InferenceOptions,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCallback] = None,
) -> InferenceResult:
    """Logits (K, z, y, x) and each gate's map (ceil(z/s), ...) of `model` over `volume_zyx`:
    a normalised CT (z, y, x), or (C, z, y, x) for a network of C input channels (the CT and its
    click channels, core.prompts).

    Raises CancelledError when cancel() returns True (checked before every window batch) and
    InputError for an unusable device, precision or option.
    """
    t0 = time.perf_counter()
    volume, divisor, patch, scales = _check_inputs(model, volume_zyx, options)
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device, options.cpu_bf16_validated)
    notify = progress or (lambda fraction, message: None)
    shape = tuple(volume.shape[1:])  # (z, y, x); volume is (C, z, y, x)
    padded_shape, starts = plan_windows(shape, patch, float(options.overlap), divisor)
    layout_name = options.memory_format

    was_training, cudnn_benchmark = model.training, torch.backends.cudnn.benchmark
    model.eval()
    runner = folded_for_inference(model)  # BatchNorm folded into the convolutions (a copy)
    try:
        runner, device, precision, fallback_note = _move_model(runner, device, precision, notify, layout_name)
        if device.type == "cuda":
            # One window shape for the whole run: let cuDNN pick its fastest 3D algorithms once.
            torch.backends.cudnn.benchmark = True
        source = _WindowSource(_padded_volume(volume, padded_shape), patch, device)
        weights = _WindowWeights(patch, scales)
        stitcher: Optional[_Stitcher] = None
        batch_size = int(options.batch_size)
        done = 0
        with torch.inference_mode():
            while done < len(starts):
                if cancel is not None and cancel():
                    raise CancelledError("inference cancelled")
                chunk = starts[done:done + batch_size]
                try:
                    windows = source.windows(chunk, device, _memory_format(device, layout_name))
                    logits, maps = _forward(runner, windows, scales, device, precision, weights,
                                            options.context_from)
                except Exception as error:  # noqa: BLE001 - only out-of-memory is handled
                    if not _is_out_of_memory(error):
                        raise
                    logits = maps = windows = None
                    _empty_cache(device)
                    if batch_size > 1:
                        batch_size //= 2
                        notify(done / len(starts), f"Out of memory on {device}: batch reduced to {batch_size}")
                        continue
                    if device.type == "cpu":
                        pz, py, px = patch
                        raise InputError(
                            None, f"not enough memory for a single {pz}x{py}x{px} window on the CPU; "
                            "use a smaller region or patch"
                        ) from None
                    notify(done / len(starts), f"Out of memory on {device} at batch 1: continuing on the CPU")
                    fallback_note = f" (out-of-memory fallback from {device})"
                    device, precision = torch.device("cpu"), "fp32"
                    runner.to(device, memory_format=_memory_format(device, layout_name))
                    source.drop_device_copy()
                    if stitcher is not None:
                        stitcher.to(device, weights)
                    batch_size = int(options.batch_size)
                    continue
                if stitcher is None:  # the first batch tells the number of classes
                    stitcher = _make_stitcher(padded_shape, patch, logits.shape[1], scales, weights, device)
                stitcher.add(chunk, logits, maps)
                done += len(chunk)
                notify(done / len(starts), f"Window {done}/{len(starts)}")
            logits_np, attention = stitcher.finish(shape)
    finally:
        model.train(was_training)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        # Leave the parameters in the default layout for whoever uses the model next.
        model.to(memory_format=torch.contiguous_format)

    return InferenceResult(
        logits=logits_np,
        attention=attention,
        device=str(device) + fallback_note,
        precision=precision,
        seconds=time.perf_counter() - t0,
        windows=len(starts),
    )


def _move_model(model: nn.Module, device: torch.device, precision: str, notify: ProgressCallback,
                layout: str = "auto"):
    """Put the model on `device`; if even that runs out of memory, use the CPU."""
    try:
        model.to(device, memory_format=_memory_format(device, layout))
        return model, device, precision, ""
    except Exception as error:  # noqa: BLE001
        if device.type == "cpu" or not _is_out_of_memory(error):
            raise
    _empty_cache(device)
    notify(0.0, f"Out of memory moving the model to {device}: running on the CPU")
    model.to("cpu", memory_format=_memory_format(torch.device("cpu"), layout))
    return model, torch.device("cpu"), "fp32", f" (out-of-memory fallback from {device})"


def _make_stitcher(
    padded_shape: tuple[int, int, int],
    patch: tuple[int, int, int],
    n_classes: int,
    scales: dict[str, int],
    weights: _WindowWeights,
    device: torch.device,
) -> _Stitcher:
    """Stitching buffers on the GPU when they take under half its free memory, else on the CPU."""
    if device.type == "cuda":
        needed = _Stitcher.estimate_bytes(padded_shape, n_classes, scales)
        free, _total = torch.cuda.mem_get_info(device)
        if needed < _GPU_BUFFER_SHARE * free:
            try:
                return _Stitcher(padded_shape, patch, n_classes, scales, weights, device)
            except Exception as error:  # noqa: BLE001
                if not _is_out_of_memory(error):
                    raise
                _empty_cache(device)
    # CPU buffers: always for CPU and MPS (unified memory, and it keeps the MPS pool small).
    return _Stitcher(padded_shape, patch, n_classes, scales, weights, torch.device("cpu"))
