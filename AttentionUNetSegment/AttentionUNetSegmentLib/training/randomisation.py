"""Domain randomisation (as SynthSeg does for brain MRI): make each training patch look like
another scanner, protocol, contrast phase and patient, so the network learns shape and context
rather than one data source's intensities.

Applied on the batch after `augmentation.augment_batch`, on the normalised patch (HU already
windowed and scaled by `core.preprocessing.normalize_hu`), per sample, each step with its own
probability:

    per-class shift   the intensity inside each labelled structure moves by up to
                      +-`class_shift` (a fatty or poorly enhancing pancreas vs a bright one)
    contrast curve    a random monotone piecewise-linear remapping of the intensity window
                      (another contrast phase or kernel: tissues move relative to each other)
    bias field        a smooth multiplicative field on the attenuation above air
    lower resolution  thicker slices: the patch is averaged down along z and interpolated back
    blur              Gaussian smoothing (a softer reconstruction kernel)
    noise             Gaussian noise (lower dose)

and the result is clipped to the window's range, as real inputs are. Every draw comes from the
caller's torch generator (seeded per step), so a run and its --resume see the same patches.
Inference never calls this module (core does not import training: Testing/Python/
test_architecture.py), so the randomisation is off at inference by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass
class DomainRandomisationConfig:
    """Off unless asked for (`train --domain-randomisation`). Intensities are in normalised
    units: with the default window (-160..240 HU, std 100) 0.1 is 10 HU."""

    enabled: bool = False
    class_shift_probability: float = 0.5
    class_shift: float = 0.8            # up to 80 HU: an enhancing pancreas vs a fatty one
    curve_probability: float = 0.5
    curve_points: int = 6               # knots of the piecewise-linear curve, ends included
    curve_shift: float = 0.4            # knot displacement, up to 40 HU
    bias_probability: float = 0.3
    bias_strength: float = 0.15         # log-amplitude of the field: x0.86 .. x1.16
    bias_grid: int = 4                  # control points per axis of the smooth field
    low_resolution_probability: float = 0.3
    max_z_factor: float = 3.0           # 2 mm model voxels seen as up to 6 mm slices
    blur_probability: float = 0.3
    max_blur_sigma: float = 1.0         # voxels
    noise_probability: float = 0.5
    max_noise_std: float = 0.3          # 30 HU

    def validate(self) -> list[str]:
        """Problems with the settings, as phrases (empty: usable)."""
        problems = []
        for name in ("class_shift_probability", "curve_probability", "bias_probability",
                     "low_resolution_probability", "blur_probability", "noise_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]")
        if self.curve_points < 2 or self.bias_grid < 2:
            problems.append("curve_points and bias_grid must be >= 2")
        if self.max_z_factor < 1.0:
            problems.append("max_z_factor must be >= 1")
        if min(self.class_shift, self.curve_shift, self.bias_strength, self.max_blur_sigma,
               self.max_noise_std) < 0:
            problems.append("shifts, strengths, sigma and noise must be >= 0")
        return problems


def _uniform(low: float, high: float, generator: torch.Generator, device) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, device=device))


def _happens(probability: float, generator: torch.Generator, device) -> bool:
    # Always draws, so the stream of random numbers does not depend on earlier outcomes.
    return float(torch.rand((), generator=generator, device=device)) < probability


def shift_classes(patch: torch.Tensor, label: torch.Tensor, max_shift: float,
                  generator: torch.Generator) -> torch.Tensor:
    """patch (1, z, y, x), label (z, y, x): each class > 0 gets its own constant offset."""
    out = patch.clone()
    n_classes = int(label.max()) + 1 if label.numel() else 1
    for cls in range(1, n_classes):
        offset = _uniform(-max_shift, max_shift, generator, patch.device)
        mask = label == cls
        if mask.any():
            out[0][mask] += offset
    return out


def contrast_curve(patch: torch.Tensor, low: float, high: float, points: int, max_shift: float,
                   generator: torch.Generator) -> torch.Tensor:
    """Monotone piecewise-linear remapping of [low, high] onto itself (knots moved by up to
    `max_shift`, then sorted and clipped: intensities keep their order, tissues their contrast
    sign, but their spacing changes)."""
    device = patch.device
    knots_x = torch.linspace(low, high, points, device=device)
    moved = knots_x + (torch.rand(points, generator=generator, device=device) * 2 - 1) * max_shift
    knots_y = moved.clamp(low, high).sort().values
    position = ((patch.clamp(low, high) - low) / (high - low) * (points - 1))
    index = position.floor().clamp(0, points - 2).long()
    fraction = position - index
    return knots_y[index] * (1 - fraction) + knots_y[index + 1] * fraction


def bias_field(patch: torch.Tensor, air: float, strength: float, grid: int,
               generator: torch.Generator) -> torch.Tensor:
    """Multiply the attenuation above air by a smooth random field exp(N(0, strength))."""
    coarse = torch.randn((1, 1, grid, grid, grid), generator=generator, device=patch.device)
    field = F.interpolate(coarse * strength, size=patch.shape[1:], mode="trilinear",
                          align_corners=True)[0]                       # (1, z, y, x)
    return (patch - air) * field.exp() + air


def lower_z_resolution(patch: torch.Tensor, factor: float) -> torch.Tensor:
    """Average slices down by `factor` along z (partial volume of thick slices), then
    interpolate back linearly, as resampling a thick-slice scan onto the model grid does."""
    depth = patch.shape[1]
    coarse_depth = max(1, round(depth / factor))
    if coarse_depth >= depth:
        return patch
    coarse = F.interpolate(patch[None], size=(coarse_depth, *patch.shape[2:]), mode="area")
    return F.interpolate(coarse, size=patch.shape[1:], mode="trilinear", align_corners=False)[0]


def gaussian_blur(patch: torch.Tensor, sigmas_zyx: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian smoothing of patch (1, z, y, x), edges replicated."""
    out = patch[None]                                                   # (1, 1, z, y, x)
    for axis, sigma in enumerate(sigmas_zyx):
        if sigma < 0.1:
            continue
        radius = max(1, math.ceil(3 * sigma))
        offsets = torch.arange(-radius, radius + 1, device=patch.device, dtype=patch.dtype)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = kernel / kernel.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        padding = [0, 0, 0, 0, 0, 0]
        padding[2 * (2 - axis)] = padding[2 * (2 - axis) + 1] = radius   # F.pad: x first
        out = F.conv3d(F.pad(out, padding, mode="replicate"), kernel.view(shape))
    return out[0]


def _randomise_sample(patch: torch.Tensor, label: torch.Tensor, config: DomainRandomisationConfig,
                      value_range: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """One patch (1, z, y, x) through the chain of the module docstring."""
    low, high = value_range
    device = patch.device
    if _happens(config.class_shift_probability, generator, device):
        patch = shift_classes(patch, label, config.class_shift, generator)
    if _happens(config.curve_probability, generator, device):
        patch = contrast_curve(patch, low, high, config.curve_points, config.curve_shift,
                               generator)
    if _happens(config.bias_probability, generator, device):
        patch = bias_field(patch, low, config.bias_strength, config.bias_grid, generator)
    if _happens(config.low_resolution_probability, generator, device):
        patch = lower_z_resolution(patch, _uniform(1.0, config.max_z_factor, generator, device))
    if _happens(config.blur_probability, generator, device):
        sigmas = [_uniform(0.0, config.max_blur_sigma, generator, device) for _ in range(3)]
        patch = gaussian_blur(patch, sigmas)
    if _happens(config.noise_probability, generator, device):
        std = _uniform(0.0, config.max_noise_std, generator, device)
        patch = patch + std * torch.randn(patch.shape, generator=generator, device=device)
    return patch.clamp(low, high)


def randomise_domain(image: torch.Tensor, label: torch.Tensor, config: DomainRandomisationConfig,
                     generator: torch.Generator, value_range: tuple[float, float]) -> torch.Tensor:
    """image (B, 1, z, y, x) float normalised, label (B, z, y, x) long -> randomised image,
    clipped to `value_range` (the normalised HU window). The label is never changed. Returns
    `image` itself when the randomisation is off."""
    if not config.enabled:
        return image
    return torch.stack([_randomise_sample(image[i], label[i], config, value_range, generator)
                        for i in range(image.shape[0])])


def normalised_window(intensity) -> tuple[float, float]:
    """The range normalised inputs take: the HU window through `normalize_hu`."""
    low, high = intensity.window_hu
    return (low - intensity.mean) / intensity.std, (high - intensity.mean) / intensity.std
