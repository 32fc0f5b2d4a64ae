"""The simulated user of interactive segmentation: where the next click goes.

The protocol (so that everyone's Dice-versus-clicks figures compare):
- click 1 (include) at the interior point of the truth farthest from its border;
- click k+1 at the interior point, farthest from its border, of the largest connected error
  region of result k: a missed region gives an include click, an extra region an exclude click.

Distances are Euclidean in mm on the grid of the arrays given (the truth's grid when scoring;
the model grid when training simulates a user). The array's edge counts as a border: a region
cut by the edge of the volume (or of a training patch) is not deeper than what is visible.
Components are 26-connected, like the product's own clean-up. Ties go to the first voxel in
(z, y, x) raster order and missed before extra, so the protocol is deterministic.
Arrays are (z, y, x) booleans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Click:
    index_zyx: tuple[int, int, int]  # voxel of the grid the arrays are on
    include: bool  # True: "this is it"; False: "not this"


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The smallest box holding every True voxel of a non-empty (z, y, x) mask."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def deepest_point(mask: np.ndarray, spacing_zyx: Sequence[float]) -> tuple[int, int, int]:
    """The voxel of `mask` farthest (in mm) from its border; the mask must not be empty."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the mask is empty: it has no interior point")
    box = _bounding_box(mask)
    # One voxel of background around the box: the array's edge counts as a border.
    region = np.pad(mask[box], 1).astype(np.uint8)
    image = sitk.GetImageFromArray(region)
    image.SetSpacing([float(s) for s in reversed(spacing_zyx)])
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=True, squaredDistance=False, useImageSpacing=True))
    inside = np.where(region.astype(bool), distance, -np.inf)
    z, y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return int(z - 1 + box[0].start), int(y - 1 + box[1].start), int(x - 1 + box[2].start)


def _largest_component(mask: np.ndarray) -> tuple[Optional[np.ndarray], int]:
    """(largest 26-connected component, its voxel count), computed inside the mask's box."""
    if not mask.any():
        return None, 0
    box = _bounding_box(mask)
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(
        sitk.GetImageFromArray(mask[box].astype(np.uint8)), True))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    best = int(np.argmax(sizes))
    component = np.zeros(mask.shape, dtype=bool)
    component[box] = labels == best
    return component, int(sizes[best])


def largest_error(truth: np.ndarray, prediction: np.ndarray) -> tuple[Optional[np.ndarray], bool]:
    """(the largest connected error region, True if it is missed truth); (None, True) if none."""
    truth, prediction = np.asarray(truth, dtype=bool), np.asarray(prediction, dtype=bool)
    missed, missed_size = _largest_component(truth & ~prediction)
    extra, extra_size = _largest_component(prediction & ~truth)
    if missed_size == 0 and extra_size == 0:
        return None, True
    return (missed, True) if missed_size >= extra_size else (extra, False)


def first_click(truth: np.ndarray, spacing_zyx: Sequence[float]) -> Click:
    """Click 1: the include click at the deepest point of the truth."""
    return Click(deepest_point(truth, spacing_zyx), True)


def next_click(truth: np.ndarray, prediction: np.ndarray, spacing_zyx: Sequence[float]) -> Optional[Click]:
    """The click that corrects the largest error of `prediction`; None when there is no error."""
    region, missed = largest_error(truth, prediction)
    if region is None:
        return None
    return Click(deepest_point(region, spacing_zyx), missed)
