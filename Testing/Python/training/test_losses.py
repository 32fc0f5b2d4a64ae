"""Dice + cross-entropy: zero for a perfect prediction, finite gradients, deep supervision."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from AttentionUNetSegmentLib.training.losses import DiceCELoss, soft_dice_loss


def _target(b=2, size=16, empty=False) -> torch.Tensor:
    target = torch.zeros(b, size, size, size, dtype=torch.long)
    if not empty:
        target[:, 4:10, 5:12, 3:9] = 1
    return target


def _perfect_logits(target: torch.Tensor, n_classes=2, margin=20.0) -> torch.Tensor:
    onehot = F.one_hot(target, n_classes).movedim(-1, 1).float()   # (B, K, z, y, x)
    return margin * (2 * onehot - 1)


def test_perfect_prediction_is_near_zero_and_wrong_is_large():
    target = _target()
    loss = DiceCELoss()
    assert loss(_perfect_logits(target), target).item() < 1e-4
    assert loss(_perfect_logits(1 - target), target).item() > 1.5     # Dice ~1 + large CE
    # The paper's loss (Dice only) and background inclusion are options.
    assert DiceCELoss(ce_weight=0.0)(_perfect_logits(target), target).item() < 1e-4
    random = torch.randn(2, 2, 16, 16, 16)
    with_bg = soft_dice_loss(random, target, include_background=True)
    without = soft_dice_loss(random, target, include_background=False)
    assert with_bg < without        # background is easy: including it lowers the loss


def test_gradients_are_finite_even_without_foreground():
    for target in (_target(), _target(empty=True)):
        for batch_dice in (True, False):
            logits = torch.randn(2, 2, 16, 16, 16, requires_grad=True)
            value = DiceCELoss(batch_dice=batch_dice)(logits, target)
            value.backward()
            assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
            assert logits.grad.abs().sum() > 0


def test_empty_class_predicted_empty_counts_as_perfect():
    target = _target(empty=True)
    assert soft_dice_loss(_perfect_logits(target), target).item() < 1e-4


def test_half_precision_logits_are_handled_in_float32():
    target = _target()
    value = DiceCELoss()(_perfect_logits(target).half(), target)
    assert value.dtype == torch.float32 and value.item() < 1e-3


def test_deep_supervision_list_is_weighted_and_normalised():
    target = _target(size=32)
    full = _perfect_logits(target)
    half = _perfect_logits(target[:, ::2, ::2, ::2])
    loss = DiceCELoss()
    assert loss([full, half], target).item() < 1e-3                 # target resized per level
    noise = torch.randn(2, 2, 32, 32, 32)
    # One output in a list is the same as the tensor itself (weights are normalised).
    assert torch.allclose(loss([noise], target), loss(noise, target))
    # Weights 1 and 0.5 normalised: 2/3 of the full-resolution loss + 1/3 of the other.
    coarse = torch.randn(2, 2, 16, 16, 16)
    expected = (2 * loss(noise, target) + loss(coarse, target[:, ::2, ::2, ::2])) / 3
    assert torch.allclose(loss([noise, coarse], target), expected, atol=1e-6)
