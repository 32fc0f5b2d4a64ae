"""The region of the model grid a click-conditioned network runs on, and how it grows.

After each click the network runs only where it matters: a box holding every include click and
the current mask, with a margin of context, at least one window large. When the object found
touches a side of that box (and the box is not already at the scan's edge there), the box grows
on that side and the network runs again, so a gland longer than the window still comes out
whole (nnInteractive calls this AutoZoom; here the box grows at full resolution, up to a cap).

Boxes are (start_zyx, stop_zyx) voxel indices of the model grid, stop exclusive.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

Box = tuple[tuple[int, int, int], tuple[int, int, int]]


def box_shape(box: Box) -> tuple[int, int, int]:
    return tuple(b - a for a, b in zip(*box))  # type: ignore[return-value]


def box_slices(box: Box) -> tuple[slice, slice, slice]:
    return tuple(slice(a, b) for a, b in zip(*box))  # type: ignore[return-value]


def mask_extent(mask: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(low, high) voxel indices (inclusive) of a (z, y, x) mask's True voxels; None if empty."""
    if mask is None or not mask.any():
        return None
    low, high = [], []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        low.append(hits[0])
        high.append(hits[-1])
    return np.asarray(low), np.asarray(high)


def _fit_axis(low: int, high: int, size: int, window: int, cap: int) -> tuple[int, int]:
    """[low, high) widened to at least `window` about its centre, at most `cap` (kept about
    its centre), then shifted inside [0, size); a scan shorter than the window is taken whole."""
    length = high - low
    if length < window:
        centre = (low + high) / 2.0
        low = int(np.floor(centre - window / 2.0 + 0.5))
        high = low + window
    elif length > cap:
        centre = (low + high) / 2.0
        low = int(np.floor(centre - cap / 2.0 + 0.5))
        high = low + cap
    if high - low >= size:
        return 0, size
    if low < 0:
        low, high = 0, high - low
    if high > size:
        low, high = low - (high - size), size
    return low, high


def region_for(shape_zyx: Sequence[int], window_zyx: Sequence[int], points: Sequence[Sequence[float]],
               mask: Optional[np.ndarray], margin: int, cap_zyx: Sequence[int]) -> Box:
    """The box around `points` (include clicks, (z, y, x) indices) and `mask`'s True voxels,
    `margin` voxels wider on every side, at least `window_zyx` and at most `cap_zyx`."""
    corners = [np.asarray(p, dtype=np.float64) for p in points]
    extent = mask_extent(mask) if mask is not None else None
    if extent is not None:
        corners += [extent[0].astype(np.float64), extent[1].astype(np.float64)]
    if not corners:
        raise ValueError("a region needs at least one click or a non-empty mask")
    stacked = np.stack(corners)
    low = np.floor(stacked.min(axis=0)).astype(int) - margin
    high = np.ceil(stacked.max(axis=0)).astype(int) + margin + 1
    start, stop = zip(*(_fit_axis(int(lo), int(hi), int(n), int(w), int(c))
                        for lo, hi, n, w, c in zip(low, high, shape_zyx, window_zyx, cap_zyx)))
    return tuple(start), tuple(stop)  # type: ignore[return-value]


def touching_sides(mask_in_box: np.ndarray, box: Box, shape_zyx: Sequence[int]) -> list[tuple[int, int]]:
    """Sides (axis, -1 low / +1 high) where the object touches the box and the box could grow
    (it is not at the scan's edge there)."""
    sides = []
    for axis in range(3):
        first = np.take(mask_in_box, 0, axis=axis)
        last = np.take(mask_in_box, mask_in_box.shape[axis] - 1, axis=axis)
        if first.any() and box[0][axis] > 0:
            sides.append((axis, -1))
        if last.any() and box[1][axis] < shape_zyx[axis]:
            sides.append((axis, +1))
    return sides


def grown(box: Box, sides: Sequence[tuple[int, int]], step_zyx: Sequence[int], shape_zyx: Sequence[int],
          cap_zyx: Sequence[int]) -> Box:
    """`box` grown by `step_zyx` on each of `sides`, within the scan and at most `cap_zyx`;
    the same box when it cannot grow on any of them."""
    start, stop = list(box[0]), list(box[1])
    for axis, direction in sides:
        room = cap_zyx[axis] - (stop[axis] - start[axis])
        step = min(int(step_zyx[axis]), max(room, 0))
        if direction < 0:
            start[axis] = max(0, start[axis] - step)
        else:
            stop[axis] = min(int(shape_zyx[axis]), stop[axis] + step)
    return tuple(start), tuple(stop)  # type: ignore[return-value]
