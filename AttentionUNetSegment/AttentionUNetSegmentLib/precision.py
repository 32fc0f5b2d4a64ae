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

from typing import Iterable, Optional

import numpy as np
import torch

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


def _foreground_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def measure_cpu_bf16_agreement(model: torch.nn.Module, volumes: Iterable[np.ndarray],
                               patch_size_zyx: tuple[int, int, int],
                               overlap: float = 0.5) -> Optional[float]:
    """Smallest foreground Dice (argmax > 0) between fp32 and bf16 CPU inference over `volumes`
    (normalised (z, y, x) arrays on the model grid); None when this CPU lacks native bf16."""
    from .inference import InferenceOptions, sliding_window_predict

    if not cpu_has_native_bf16():
        return None
    scores = []
    for volume in volumes:
        masks = []
        for precision in ("fp32", "bf16"):
            options = InferenceOptions(patch_size_zyx=tuple(patch_size_zyx), overlap=overlap, device="cpu",
                                       precision=precision, return_attention=False)
            masks.append(sliding_window_predict(model, volume, options).logits.argmax(0) > 0)
        scores.append(_foreground_dice(*masks))
    return min(scores) if scores else None
