"""After training: does this model segment the same in bf16 as in fp32 on the CPU?

The smallest foreground Dice between the two over validation volumes is recorded in the model
file; `core.devices.model_allows_cpu_bf16` reads it at inference time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

import numpy as np
import torch

from ..core.devices import cpu_has_native_bf16


def _foreground_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def measure_cpu_bf16_agreement(model: torch.nn.Module, volumes: Iterable[np.ndarray],
                               patch_size_zyx: tuple[int, int, int],
                               overlap: float = 0.5) -> Optional[float]:
    """Smallest foreground Dice (argmax > 0) between fp32 and bf16 CPU inference over `volumes`
    (normalised (z, y, x) arrays on the model grid); None when this CPU lacks native bf16."""
    from ..core.inference import InferenceOptions, sliding_window_predict

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
