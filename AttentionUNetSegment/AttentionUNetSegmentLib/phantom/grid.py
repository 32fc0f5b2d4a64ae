"""A voxel grid placed in the patient frame, and index boxes on it.

The anatomy lives in a patient frame in millimetres (LPS like SimpleITK: x to the patient's
Left, y to Posterior, z to Superior); a `Grid` is where one case's voxels sit in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

Box = tuple[slice, slice, slice]  # (z, y, x) index ranges


@dataclass
class Grid:
    """A voxel grid placed in the patient frame (the geometry of a SimpleITK image).

    `spacing`/`size` are in index order (x, y, z) like SimpleITK; `direction` has the unit vector
    of index axis a in column a; `origin` is the patient-frame position of voxel (0, 0, 0).
    """

    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    size: tuple[int, int, int]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return (self.size[2], self.size[1], self.size[0])

    def index_box(self, lo: np.ndarray, hi: np.ndarray) -> Optional[Box]:
        """Index ranges of the voxels that can lie inside the physical box [lo, hi], or None."""
        corners = np.array([[(lo, hi)[(c >> a) & 1][a] for a in range(3)] for c in range(8)], float)
        index = (corners - self.origin) @ self.direction / self.spacing  # rows: continuous (i, j, k)
        first = np.maximum(np.floor(index.min(axis=0)).astype(int), 0)
        last = np.minimum(np.ceil(index.max(axis=0)).astype(int) + 1, np.array(self.size))
        if np.any(last <= first):
            return None
        return (slice(first[2], last[2]), slice(first[1], last[1]), slice(first[0], last[0]))

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient-frame X, Y, Z of the voxels of `box` as broadcastable float32 arrays.

        On an axis-aligned grid X varies along x only, so it stays (1, 1, nx): the shapes'
        arithmetic then broadcasts and costs a fraction of a full 3-D evaluation.
        """
        steps = []
        for axis, sl in zip((0, 1, 2), (box[2], box[1], box[0])):
            shape = [1, 1, 1]
            shape[2 - axis] = sl.stop - sl.start
            steps.append((np.arange(sl.start, sl.stop, dtype=np.float64) * self.spacing[axis]).reshape(shape))
        out = []
        for row in range(3):
            value: Union[float, np.ndarray] = float(self.origin[row])
            for axis in range(3):
                weight = self.direction[row, axis]
                if abs(weight) > 1e-9:
                    value = value + weight * steps[axis]
            out.append(np.asarray(value, dtype=np.float32).reshape((1, 1, 1)) if np.ndim(value) == 0
                       else np.asarray(value, dtype=np.float32))
        return out[0], out[1], out[2]


def box_shape(box: Box) -> tuple[int, int, int]:
    return tuple(s.stop - s.start for s in box)  # type: ignore[return-value]


def intersect_boxes(outer: Box, inner: Box) -> Optional[tuple[Box, Box]]:
    """The part of `inner` inside `outer`: (absolute box, the same box relative to `outer`)."""
    absolute, relative = [], []
    for o, i in zip(outer, inner):
        start, stop = max(o.start, i.start), min(o.stop, i.stop)
        if stop <= start:
            return None
        absolute.append(slice(start, stop))
        relative.append(slice(start - o.start, stop - o.start))
    return tuple(absolute), tuple(relative)  # type: ignore[return-value]
