"""Augmentation (torch, on the batch, on whatever device the batch lives: CPU or GPU):
rotation and scaling in one resampling, optional flips, and mild intensity changes. Stronger,
SynthSeg-style intensity and resolution changes are `randomisation.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass
class AugmentationConfig:
    """Probabilities are per sample. The ranges follow the official training config
    (rotation 15 degrees, scale 0.7-1.3) and nnU-Net's intensity augmentations."""

    enabled: bool = True
    affine_probability: float = 0.5
    rotation_z_deg: float = 15.0        # about the z (cranio-caudal) axis: in-plane rotation
    rotation_other_deg: float = 5.0     # about y and x: patients lie flat, so small
    scale_range: tuple[float, float] = (0.7, 1.3)   # > 1 magnifies
    # The official code used flips, but the pancreas is not left-right symmetric and the
    # volumes are in a canonical (LPS) orientation: a flipped patch shows an anatomy (pancreas
    # tail on the patient's right) that never occurs, which wastes capacity and weakens the
    # positional prior. So flips are off by default; name axes ("x", "y", "z") to enable.
    flip_axes: tuple[str, ...] = ()
    flip_probability: float = 0.5
    intensity_probability: float = 0.3  # each of brightness, contrast, gamma, noise
    brightness: float = 0.1             # additive, normalised units (0.1 = 10 HU with std 100)
    contrast_range: tuple[float, float] = (0.75, 1.25)
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.05             # maximum standard deviation, normalised units


def _uniform(low: float, high: float, n: int, generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _rotation_zyx(angles: torch.Tensor) -> torch.Tensor:
    """(n, 3) angles (about z, y, x) in radians -> (n, 3, 3) rotations in (z, y, x) coords."""
    n = angles.shape[0]
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones(n, device=angles.device), torch.zeros(n, device=angles.device)

    def matrix(rows):   # rows of (n,) tensors -> (n, 3, 3)
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    # About z: mixes y and x; about y: mixes z and x; about x: mixes z and y.
    rz = matrix([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = matrix([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rx = matrix([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def affine_transform(image: torch.Tensor, label: torch.Tensor, matrix_zyx: torch.Tensor,
                     pad_value: float, voxel_size_zyx: Sequence[float] = (1.0, 1.0, 1.0)
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample patches about their centre.

    image (n, 1, z, y, x), label (n, z, y, x) long, matrix_zyx (n, 3, 3) maps output
    positions (physical, relative to the centre) to input positions.
    """
    n, _, *size = image.shape
    # affine_grid works in normalised coordinates [-1, 1] per axis; a rotation is only a
    # rotation in physical units, so conjugate with the half extents of the patch.
    half = torch.tensor([s * v / 2.0 for s, v in zip(size, voxel_size_zyx)],
                        dtype=matrix_zyx.dtype, device=matrix_zyx.device)
    normalised = matrix_zyx * half[None, None, :] / half[None, :, None]   # H^-1 A H
    theta = torch.zeros(n, 3, 4, dtype=image.dtype, device=image.device)
    theta[:, :, :3] = normalised.flip(-1).flip(-2)    # grid coordinates are (x, y, z)
    grid = F.affine_grid(theta, [n, 1, *size], align_corners=False)
    # grid_sample pads with 0; shift so the padding is air, as for out-of-volume patches.
    image = F.grid_sample(image - pad_value, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False) + pad_value
    label = F.grid_sample(label[:, None].to(image.dtype), grid, mode="nearest",
                          padding_mode="zeros", align_corners=False)[:, 0].round().long()
    return image, label


def augment_batch(image: torch.Tensor, label: torch.Tensor, config: AugmentationConfig,
                  generator: torch.Generator, pad_value: float = 0.0,
                  voxel_size_zyx: Sequence[float] = (1.0, 1.0, 1.0)
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random spatial + intensity augmentation of a batch, image and label kept aligned.

    image (B, 1, z, y, x) float, label (B, z, y, x) long; `generator` lives on the batch's
    device, which makes the result a function of its seed on CPU and on CUDA.
    """
    if not config.enabled:
        return image, label
    image, label = image.clone(), label.clone()
    b, device = image.shape[0], image.device

    def chosen(p: float) -> torch.Tensor:
        return torch.nonzero(torch.rand(b, generator=generator, device=device) < p)[:, 0]

    # Spatial: rotation and scaling in one resampling (one interpolation, not two).
    idx = chosen(config.affine_probability)
    if idx.numel():
        n = idx.numel()
        limits = torch.tensor([config.rotation_z_deg, config.rotation_other_deg,
                               config.rotation_other_deg], device=device)
        angles = (torch.rand(n, 3, generator=generator, device=device) * 2 - 1) \
            * torch.deg2rad(limits)
        scale = _uniform(*config.scale_range, n, generator, device)
        matrix = _rotation_zyx(angles) / scale[:, None, None]   # output -> input positions
        image[idx], label[idx] = affine_transform(image[idx], label[idx], matrix.float(),
                                                  pad_value, voxel_size_zyx)

    for axis_name in config.flip_axes:
        axis = {"z": 0, "y": 1, "x": 2}[axis_name]
        idx = chosen(config.flip_probability)
        if idx.numel():
            image[idx] = image[idx].flip(axis + 2)
            label[idx] = label[idx].flip(axis + 1)

    # Intensity (image only): scanner and contrast-phase variation.
    p = config.intensity_probability
    idx = chosen(p)
    if idx.numel():
        image[idx] += _uniform(-config.brightness, config.brightness, idx.numel(), generator,
                               device).view(-1, 1, 1, 1, 1)
    idx = chosen(p)
    if idx.numel():
        factor = _uniform(*config.contrast_range, idx.numel(), generator, device)
        mean = image[idx].mean(dim=(1, 2, 3, 4), keepdim=True)
        image[idx] = (image[idx] - mean) * factor.view(-1, 1, 1, 1, 1) + mean
    idx = chosen(p)
    if idx.numel():
        # Gamma needs non-negative values: map each patch to [0, 1] and back.
        gamma = _uniform(*config.gamma_range, idx.numel(), generator, device)
        patch = image[idx]
        low = patch.amin(dim=(1, 2, 3, 4), keepdim=True)
        span = (patch.amax(dim=(1, 2, 3, 4), keepdim=True) - low).clamp_min(1e-6)
        image[idx] = ((patch - low) / span) ** gamma.view(-1, 1, 1, 1, 1) * span + low
    idx = chosen(p)
    if idx.numel():
        std = _uniform(0.0, config.noise_std, idx.numel(), generator, device)
        noise = torch.randn(image[idx].shape, generator=generator, device=device)
        image[idx] += noise * std.view(-1, 1, 1, 1, 1)
    return image, label
