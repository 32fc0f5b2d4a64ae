"""CT preprocessing onto the model grid, and its exact inverse back onto the input grid.

Forward (``preprocess``):  input CT (any orientation, spacing, pixel type)
    -> ``geometry.to_canonical``   lossless permute/flip to (closest) LPS orientation
    -> float32
    -> ``geometry.resample_to_spacing``  model spacing, linear, -1024 HU (air) outside,
                                        Gaussian anti-aliasing on downsampled axes
    -> ``normalize_hu``            clip to the HU window, then (hu - mean) / std

Inverse (``restore_to_input``): any (C, z, y, x) map on the model grid -- or on a coarse grid
from ``geometry.coarse_grid`` (attention maps) -- is resampled with ``sitk.Resample`` using the
*input image itself* as the reference, so the result has exactly the input's size, spacing,
origin and direction, whatever its orientation (RAS, permuted, oblique).

Arrays are numpy ``(z, y, x)``; channel stacks ``(C, z, y, x)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from .geometry import describe_grid, resample_to_spacing, to_canonical

__all__ = [
    "AIR_HU",
    "IntensitySpec",
    "normalize_hu",
    "PreprocessedVolume",
    "to_model_grid",
    "preprocess",
    "restore_to_input",
]

#: Value for model-grid voxels that fall outside the scan: air, as CT scanners pad.
AIR_HU = -1024.0


@dataclass
class IntensitySpec:
    """HU normalisation: clip to ``window_hu``, then ``(hu - mean) / std``."""

    window_hu: tuple[float, float] = (-160.0, 240.0)
    mean: float = 40.0
    std: float = 100.0

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.window_hu)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(
                f"window_hu must be (low, high) with low < high, got {self.window_hu!r}"
            )
        if not (np.isfinite(self.std) and self.std > 0):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if not np.isfinite(self.mean):
            raise ValueError(f"mean must be finite, got {self.mean!r}")
        self.window_hu = (low, high)
        self.mean = float(self.mean)
        self.std = float(self.std)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {
            "window_hu": [self.window_hu[0], self.window_hu[1]],
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IntensitySpec":
        """Inverse of ``to_dict``; missing keys take the defaults, unknown keys are an error."""
        unknown = set(data) - {"window_hu", "mean", "std"}
        if unknown:
            raise ValueError(f"unknown IntensitySpec keys: {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        if "window_hu" in data:
            kwargs["window_hu"] = tuple(float(v) for v in data["window_hu"])
        if "mean" in data:
            kwargs["mean"] = float(data["mean"])
        if "std" in data:
            kwargs["std"] = float(data["std"])
        return cls(**kwargs)


def normalize_hu(array: np.ndarray, spec: IntensitySpec) -> np.ndarray:
    """Clip HU to ``spec.window_hu`` and standardise; returns a new float32 array, same shape."""
    out = np.asarray(array, dtype=np.float32).copy()
    np.clip(out, spec.window_hu[0], spec.window_hu[1], out=out)
    out -= np.float32(spec.mean)
    out /= np.float32(spec.std)
    return out


@dataclass
class PreprocessedVolume:
    """The network input and the grid it lives on."""

    array: np.ndarray  # (z, y, x) float32, normalised, on `grid`
    grid: sitk.Image  # model grid: canonical orientation, target spacing; uint8, values unused


def to_model_grid(image: sitk.Image, spacing_zyx: Sequence[float]) -> sitk.Image:
    """CT in HU on the model grid (float32): canonical orientation, then ``spacing_zyx`` (mm).

    The first three steps of ``preprocess`` (everything but intensity normalisation), exposed
    so that training data, tests and ``preprocess`` share one definition of the model grid.
    """
    canonical = sitk.Cast(to_canonical(image), sitk.sitkFloat32)
    return resample_to_spacing(
        canonical, spacing_zyx, sitk.sitkLinear, AIR_HU, antialias=True
    )


def _empty_like_grid(image: sitk.Image) -> sitk.Image:
    """uint8 image with the geometry of ``image`` (1 byte/voxel instead of keeping the HU copy)."""
    grid = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    grid.CopyInformation(image)
    return grid


def preprocess(
    image: sitk.Image, spacing_zyx: Sequence[float], intensity: IntensitySpec
) -> PreprocessedVolume:
    """to_canonical -> float32 -> resample (linear, -1024 HU outside) -> normalise.

    ``spacing_zyx`` is the model spacing in mm, order (z, y, x). Axes that are downsampled
    are Gaussian pre-filtered first (anti-aliasing, see ``geometry.resample_to_spacing``).
    The returned ``array`` is ``(z, y, x)`` float32; ``grid`` (uint8, values unused) says
    where it lies in physical (LPS) space.
    """
    hu = to_model_grid(image, spacing_zyx)
    array = normalize_hu(sitk.GetArrayViewFromImage(hu), intensity)
    return PreprocessedVolume(array=array, grid=_empty_like_grid(hu))


def padded_channel(channel_zyx: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """Channel on ``grid``, padded by one edge-replicated voxel on every side.

    Why: ``resample_to_spacing`` rounds the grid size, so its far edge may lie up to half a
    model voxel inside the input's extent, and a few input voxel centres at the border would
    otherwise fall outside the grid and get ``default_value``. Replicating the edge one voxel
    outward extends the map by exactly one grid voxel (nearest-value extrapolation); beyond
    that, ``default_value`` applies as usual (e.g. outside a crop).
    """
    padded = np.pad(np.asarray(channel_zyx, dtype=np.float32), 1, mode="edge")
    image = sitk.GetImageFromArray(padded)
    direction = np.asarray(grid.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing_xyz = np.asarray(grid.GetSpacing(), dtype=np.float64)
    origin_xyz = np.asarray(grid.GetOrigin(), dtype=np.float64) - direction @ spacing_xyz
    image.SetSpacing(grid.GetSpacing())
    image.SetDirection(grid.GetDirection())
    image.SetOrigin(origin_xyz.tolist())
    return image


def restore_to_input(
    channels_zyx: np.ndarray,
    grid: sitk.Image,
    input_image: sitk.Image,
    interpolator: int = sitk.sitkLinear,
    default_value: float = 0.0,
) -> np.ndarray:
    """Resample maps from ``grid`` onto ``input_image``'s grid exactly.

    ``channels_zyx`` is ``(C, z, y, x)`` with ``(z, y, x) == grid size reversed``; ``grid`` is
    the model grid (``PreprocessedVolume.grid``) or a ``geometry.coarse_grid`` of it. Each
    channel is resampled with ``sitk.Resample(channel, input_image, identity, interpolator,
    default_value)`` -- the input image is the reference, so the output has its exact size,
    spacing, origin and direction. Input voxels outside the grid (more than one grid voxel
    beyond its outer edge, e.g. outside a crop) get ``default_value``.

    Returns ``(C, z', y', x')`` float32 in the input's array order. Use
    ``sitk.sitkNearestNeighbor`` for label channels.
    """
    channels = np.asarray(channels_zyx)
    if channels.ndim != 4:
        raise ValueError(f"channels_zyx must be (C, z, y, x), got shape {channels.shape}")
    grid_shape_zyx = tuple(reversed(grid.GetSize()))
    if channels.shape[1:] != grid_shape_zyx:
        raise ValueError(
            f"channels_zyx spatial shape {channels.shape[1:]} (z, y, x) does not match the grid "
            f"{grid_shape_zyx} (z, y, x); grid: {describe_grid(grid)}"
        )
    out_shape_zyx = tuple(reversed(input_image.GetSize()))
    out = np.empty((channels.shape[0],) + out_shape_zyx, dtype=np.float32)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    for c in range(channels.shape[0]):
        source = padded_channel(channels[c], grid)
        restored = sitk.Resample(
            source, input_image, identity, interpolator, float(default_value), sitk.sitkFloat32
        )
        out[c] = sitk.GetArrayViewFromImage(restored)
    return out
