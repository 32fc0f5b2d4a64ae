"""May this model run in bf16 on this CPU? Measured per model, recorded in its model file.

bf16 autocast roughly halves CPU inference time on CPUs with native bf16 (AVX512-BF16, AMX),
but whether the segmentation survives the lower precision depends on the weights: a randomly
initialised full network agreed with fp32 at Dice 0.986 only, a trained one at 0.998. So the
rule is empirical: after training, the best model segments validation volumes in fp32 and in
bf16; the smallest foreground Dice between the two is stored in the model file
(`spec.training["cpu_bf16_dice_vs_fp32"]`), and precision "auto" uses bf16 on the CPU only when
that value is >= 0.99 and the CPU computes bf16 natively (emulated bf16 is slower than fp32).
"""

from __future__ import annotations

import torch

from .errors import InputError
from .options import PRECISIONS

CPU_BF16_MIN_DICE = 0.99
CPU_BF16_KEY = "cpu_bf16_dice_vs_fp32"


def cpu_has_native_bf16() -> bool:
    """True when oneDNN reports native bf16 support (AVX512-BF16 or AMX) on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # builds without oneDNN, other architectures
        return False


def model_allows_cpu_bf16(training_summary: dict) -> bool:
    """The model file records a measured bf16/fp32 agreement of at least CPU_BF16_MIN_DICE."""
    value = training_summary.get(CPU_BF16_KEY)
    return value is not None and float(value) >= CPU_BF16_MIN_DICE


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available, else mps, else cpu; an explicit name must be usable here."""
    text = (name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InputError(None, f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                None,
                f"device {name!r} requested but CUDA is not available (no NVIDIA GPU/driver, or a "
                "CPU-only PyTorch build); use device cpu or auto",
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise InputError(None, f"device {name!r} requested but only {count} GPU(s) exist")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise InputError(
                None, f"device {name!r} requested but Apple MPS is not available; use cpu or auto"
            )
        return device
    raise InputError(None, f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def resolve_precision(name: str, device: torch.device, cpu_bf16_validated: bool = False) -> str:
    """Concrete precision ("fp32", "bf16" or "fp16") for `name` on `device`.

    `cpu_bf16_validated`: the model file records that bf16 agrees with fp32 (see the module docstring).
    """
    text = (name or "auto").strip().lower()
    if text not in PRECISIONS:
        raise InputError(None, f"unknown precision {name!r}; use one of {', '.join(PRECISIONS)}")
    if text == "auto":
        if device.type == "cuda":
            # bf16 keeps fp32's exponent range (no overflow in logits), so prefer it where the
            # GPU has it (Ampere and newer); older GPUs get fp16.
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_bf16_validated:

            # Measured for this model (Dice >= 0.99 against fp32) and native on this CPU.
            if cpu_has_native_bf16():
                return "bf16"
        # Otherwise CPU: fp32. On this project's machine (2 cores of an AMD EPYC with AVX512-BF16,
        # torch 2.13, full-width network, 64^3 windows) bf16 autocast was ~2x faster, but its
        # foreground agreed with fp32 at Dice 0.986 on the randomly initialised full network
        # (0.998 on a briefly trained tiny one): below our 0.99 bar until a trained full model
        # confirms it, and CPUs without native bf16 emulate it slowly. It stays available as an
        # explicit choice. MPS: fp32, half precision is not validated there.
        return "fp32"
    if text == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(None, "precision bf16 requested but this GPU does not support it; use fp16")
    return text
