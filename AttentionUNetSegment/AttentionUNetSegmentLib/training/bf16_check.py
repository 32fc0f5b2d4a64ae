"""After training: does this model segment the same in bf16 as in fp32 on the CPU?

The smallest foreground Dice between the two over validation volumes is recorded in the model
file; `core.devices.model_allows_cpu_bf16` reads it at inference time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..core.devices import cpu_has_native_bf16
from ..core.options import DEFAULT_OVERLAP


def _foreground_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def measure_cpu_bf16_agreement(model: torch.nn.Module, volumes: Iterable[np.ndarray],
                               patch_size_zyx: tuple[int, int, int],
                               overlap: float = DEFAULT_OVERLAP) -> Optional[float]:
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


def central_window(volume: np.ndarray, label: np.ndarray, patch_size_zyx) -> np.ndarray:
    """The patch-sized block of `volume` centred on the label's foreground (or the volume's
    centre): one sliding window, so the check costs two CPU forward passes per case, not a
    whole volume's worth (which at the paper's widths kept a GPU run busy on its CPU for
    minutes after training had ended)."""
    foreground = np.argwhere(np.asarray(label) > 0)
    centre = foreground.mean(0) if len(foreground) else np.array(volume.shape) / 2
    block = []
    for axis, (size, patch) in enumerate(zip(volume.shape, patch_size_zyx)):
        start = int(round(centre[axis] - patch / 2))
        start = min(max(start, 0), max(size - patch, 0))
        block.append(slice(start, start + patch))
    return np.ascontiguousarray(volume[tuple(block)])


def record_cpu_bf16_agreement(model_path: Path, cases, say: Callable[[str], None]) -> None:
    """Measure bf16-vs-fp32 CPU agreement of the saved model on one window per validation case
    (`cases`: objects with .image and .label on the model grid) and store it in its file, so
    that `segment` may use bf16 on CPUs that have it (core.devices)."""
    from ..core.devices import CPU_BF16_KEY
    from ..files.modelfile import load_model
    from .checkpoints import save_model_file

    if not cpu_has_native_bf16():
        say("CPU bf16 agreement not measured (this CPU has no native bf16)")
        return
    model, spec = load_model(model_path)
    windows = [central_window(case.image, case.label, spec.patch_size_zyx) for case in cases]
    say(f"measuring CPU bf16 vs fp32 agreement on {len(windows)} window(s)")
    # torchrun sets OMP_NUM_THREADS=1 for every rank; the training is over and the cores idle,
    # so use them all (on one thread, the paper-width network took ~12 s per window).
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                              else os.cpu_count() or 1))
    try:
        agreement = measure_cpu_bf16_agreement(model, windows, spec.patch_size_zyx)
    finally:
        torch.set_num_threads(threads)
    if agreement is None:
        return
    spec.training[CPU_BF16_KEY] = agreement
    save_model_file(model_path, model, spec, spec.training.get("weights_dtype") == "bfloat16")
    say(f"CPU bf16 vs fp32 agreement on {len(windows)} validation window(s): Dice {agreement:.4f}")
