"""What a corrective click may change: only what is connected to it (FocalClick's "progressive
merge", Chen et al. 2022).

After click 1 the network's answer is the result. After a corrective click, the network
proposes a whole new mask; of the differences from the previous mask only those the click asked
for are taken: an include click adds the connected part of the additions that contains it, an
exclude click removes the connected part of the removals that contains it. Everything else stays
as it was, so a click never changes the segment far away from where the user clicked (a
radiologist's edit does not leak into the liver three clicks later). When the network does not
change the clicked voxel at all, the ball of the click encoding is added or removed there, so a
click always moves the segment. Arrays are (z, y, x) bool; the click is a voxel index.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk


def _component_at(mask: np.ndarray, index: tuple[int, int, int]) -> np.ndarray:
    """The 26-connected component of `mask` holding voxel `index` (empty when it is off)."""
    if not mask[index]:
        return np.zeros_like(mask)
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True))
    return labels == labels[index]


def _ball(shape: Sequence[int], centre: Sequence[float], radius: float) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def merge_click(previous: np.ndarray, proposal: np.ndarray, click_zyx: Sequence[float], include: bool,
                radius: float) -> np.ndarray:
    """The new mask: `previous` changed only where the click at `click_zyx` asked (see above)."""
    index = tuple(int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(click_zyx, previous.shape))
    change = (proposal & ~previous) if include else (previous & ~proposal)
    taken = _component_at(change, index)
    if not taken.any() and previous[index] != include:
        taken = _ball(previous.shape, click_zyx, radius)  # the network ignored the click: do as it says
    return (previous | taken) if include else (previous & ~taken)
