"""Soft Dice + cross-entropy, with optional deep supervision over several output resolutions.

The paper trains with a soft Dice loss. Dice alone is unstable at the start of training
(every voxel near 0.5, gradients dominated by the rare foreground); adding cross-entropy, as
nnU-Net does, gives per-voxel gradients that make the first epochs converge reliably, so the
default is Dice + CE with equal weights. `DiceCELoss(ce_weight=0)` is the paper's loss.

Deep supervision: our AttentionUNet3D (like the official `*_dsv_*` models) fuses its
per-level heads into the single full-resolution output it returns, and that fused map is what
is trained -- the supervision reaches every level through the fusion conv. A network that
returns a list of outputs (finest first) is also accepted: each output is compared with the
target downsampled to its size (nearest), weighted 1, 1/2, 1/4, ... and normalised.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, include_background: bool = False,
                   batch_dice: bool = True, smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean soft Dice over classes.

    logits (B, K, z, y, x), target (B, z, y, x) long in [0, K). `batch_dice` pools the whole
    batch into one volume per class (nnU-Net's choice for small batches: a patch without
    pancreas then does not produce a 0/0 Dice of its own). `smooth` in numerator and
    denominator makes an absent class predicted absent count as Dice 1.
    """
    probs = torch.softmax(logits.float(), dim=1)                      # (B, K, z, y, x)
    n_classes = probs.shape[1]
    onehot = F.one_hot(target.long(), n_classes).movedim(-1, 1).to(probs.dtype)   # (B, K, ...)
    dims = (0, 2, 3, 4) if batch_dice else (2, 3, 4)
    intersection = (probs * onehot).sum(dims)                         # (K,) or (B, K)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    if not include_background and n_classes > 1:
        dice = dice[..., 1:]
    return 1.0 - dice.mean()


def _resize_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(target.shape[1:]) == tuple(size):
        return target
    resized = F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0].long()


class DiceCELoss(nn.Module):
    """dice_weight * soft Dice + ce_weight * cross-entropy, summed over deep-supervision outputs.

    forward(outputs, target): outputs is logits (B, K, z, y, x) or a list of such tensors
    (finest first, coarser ones at any size); target (B, z, y, x) long. Computed in float32
    even under autocast: the softmax sums over whole patches.
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0,
                 include_background: bool = False, batch_dice: bool = True,
                 deep_supervision_weights: Sequence[float] = (1.0, 0.5, 0.25, 0.125)):
        super().__init__()
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)
        self.include_background = include_background
        self.batch_dice = batch_dice
        self.deep_supervision_weights = tuple(float(w) for w in deep_supervision_weights)

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(
                logits, target, self.include_background, self.batch_dice)
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(logits.float(), target.long())
        return loss

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor],
                target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.single(outputs, target)
        outputs = list(outputs)
        # Levels beyond the listed weights keep halving.
        weights = [self.deep_supervision_weights[i] if i < len(self.deep_supervision_weights)
                   else self.deep_supervision_weights[-1] * 0.5 ** (i - len(
                       self.deep_supervision_weights) + 1) for i in range(len(outputs))]
        total = sum(weights)
        return sum((w / total) * self.single(out, _resize_target(target, out.shape[2:]))
                   for w, out in zip(weights, outputs))
