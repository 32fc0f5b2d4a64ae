"""Results on the model grid back onto the CT grid, costing what the result needs, not the CT's size.

``preprocessing.restore_to_input`` resamples a whole map onto the whole CT grid; on a
512x512x800 CT that is 840 MB of float32 per map (twice, with SimpleITK's copy) and seconds of
interpolation. Two cheaper, still exact, ways are here:

- ``foreground_box`` + ``restore_box``: linear interpolation is a convex combination of the 8
  surrounding grid values, so a CT voxel can exceed 0.5 only next to a model voxel that does.
  The labels are therefore decided by resampling only the CT box around those model voxels
  (plus a margin); everything outside is background by construction, not by approximation.
- ``restore_in_slabs``: a whole map on the CT grid (probabilities, attention on the CT grid),
  filled slab by slab along z into one preallocated array, so only one output copy exists.

Every resampled voxel is computed with the same physical point as on the full grid (the box's
origin is the CT's own index-to-physical mapping), so values equal the full-grid resample.
Arrays are (z, y, x); SimpleITK sizes and indices (x, y, z).
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .preprocessing import padded_channel

#: z-slices per slab when a whole map is resampled: ~16 MB of float32 per 512x512 CT slab.
SLAB_SLICES = 16

Box = tuple[tuple[int, int, int], tuple[int, int, int]]  # (start_xyz, size_xyz) in CT indices


def _index_box_to_ct(grid: sitk.Image, low_xyz, high_xyz, ct: sitk.Image, margin: int) -> Optional[Box]:
    """CT index box covering the physical box of grid indices low..high (continuous), + margin."""
    corners = [
        ct.TransformPhysicalPointToContinuousIndex(
            grid.TransformContinuousIndexToPhysicalPoint([float(v) for v in corner]))
        for corner in itertools.product(*zip(low_xyz, high_xyz))
    ]
    corners_xyz = np.asarray(corners, dtype=np.float64)
    size_xyz = np.asarray(ct.GetSize())
    start = np.maximum(np.floor(corners_xyz.min(axis=0)).astype(int) - margin, 0)
    stop = np.minimum(np.ceil(corners_xyz.max(axis=0)).astype(int) + margin + 1, size_xyz)
    if np.any(stop <= start):
        return None
    return tuple(int(v) for v in start), tuple(int(v) for v in stop - start)


def foreground_box(probability_zyx: np.ndarray, grid: sitk.Image, ct: sitk.Image,
                   threshold: float = 0.5, margin: int = 1) -> Optional[Box]:
    """The CT box outside which linear resampling of `probability_zyx` stays <= `threshold`.

    None when no model voxel exceeds the threshold (the whole CT is background). `margin` CT
    voxels of guaranteed background are added on every side (clipped to the CT), so that
    post-processing on the box sees the same topology as on the whole CT: a background region
    touching the box's border is connected to the background outside it.
    """
    above = probability_zyx > threshold
    if not above.any():
        return None
    low_zyx, high_zyx = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(above.any(axis=others))
        low_zyx.append(hits[0] - 1)  # a neighbour of a voxel above the threshold may still interpolate above it
        high_zyx.append(hits[-1] + 1)
    return _index_box_to_ct(grid, low_zyx[::-1], high_zyx[::-1], ct, margin)


def restore_box(channel_zyx: np.ndarray, grid: sitk.Image, ct: sitk.Image, box: Box,
                interpolator: int = sitk.sitkLinear, default_value: float = 0.0) -> np.ndarray:
    """`channel_zyx` (on `grid`) resampled onto the CT voxels of `box`: (z, y, x) float32."""
    start_xyz, size_xyz = box
    source = padded_channel(channel_zyx, grid)
    restored = sitk.Resample(
        source, list(size_xyz), sitk.Transform(3, sitk.sitkIdentity), interpolator,
        ct.TransformIndexToPhysicalPoint([int(v) for v in start_xyz]), ct.GetSpacing(), ct.GetDirection(),
        float(default_value), sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(restored)


def restore_in_slabs(channel_zyx: np.ndarray, grid: sitk.Image, ct: sitk.Image,
                     interpolator: int = sitk.sitkLinear, default_value: float = 0.0,
                     out: Optional[np.ndarray] = None, slab_slices: int = SLAB_SLICES) -> np.ndarray:
    """`channel_zyx` resampled onto the whole CT grid, (z, y, x) float32, one z-slab at a time.

    Only the output array (or `out`, e.g. a view of a larger array) and one slab exist at once.
    Values equal ``restore_to_input``'s.
    """
    size_xyz = ct.GetSize()
    if out is None:
        out = np.empty(tuple(reversed(size_xyz)), dtype=np.float32)
    source = padded_channel(channel_zyx, grid)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    for z in range(0, size_xyz[2], slab_slices):
        depth = min(slab_slices, size_xyz[2] - z)
        slab = sitk.Resample(
            source, [size_xyz[0], size_xyz[1], depth], identity, interpolator,
            ct.TransformIndexToPhysicalPoint([0, 0, z]), ct.GetSpacing(), ct.GetDirection(),
            float(default_value), sitk.sitkFloat32,
        )
        out[z:z + depth] = sitk.GetArrayViewFromImage(slab)
    return out


def box_slices(box: Box) -> tuple[slice, slice, slice]:
    """(z, y, x) slices of a CT array covered by `box`."""
    start_xyz, size_xyz = box
    return tuple(slice(s, s + n) for s, n in zip(reversed(start_xyz), reversed(size_xyz)))  # type: ignore[return-value]

