"""Label clean-up: largest component, 3D hole filling, component at (or nearest) a point.

Arrays are numpy ``(z, y, x)``. Connectivity follows the usual 3D digital-topology pair:
foreground components are 26-connected (faces, edges, corners -- thin oblique parts of the
pancreas stay one object) and background is 6-connected (faces), so a 26-connected shell
encloses its cavity and hole filling is consistent with component labelling.
Only NumPy and SimpleITK are used (no SciPy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

__all__ = ["largest_component", "fill_holes", "component_at_point", "components_at_points", "components_overlapping",
           "postprocess_labelmap"]


def _label_components(mask: np.ndarray, fully_connected: bool) -> tuple[np.ndarray, int]:
    """Connected components of a boolean (z, y, x) mask: (labels uint32, number of components)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    labelled = sitk.ConnectedComponent(image, fully_connected)
    labels = sitk.GetArrayFromImage(labelled)
    return labels, int(labels.max()) if labels.size else 0


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be a 3D (z, y, x) array, got shape {mask.shape}")
    return mask != 0


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Boolean (z, y, x) mask of the largest 26-connected component (all False if empty).

    Ties are broken by the lowest component label (first in raster order), so it is
    deterministic.
    """
    mask = _as_mask(mask)
    labels, count = _label_components(mask, fully_connected=True)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0  # background
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill 3D holes: background regions (6-connected) that do not touch the volume border.

    A hollow sphere becomes solid; a cup or tube whose cavity reaches the border through
    background stays open. Returns a boolean (z, y, x) mask.
    """
    mask = _as_mask(mask)
    labels, count = _label_components(~mask, fully_connected=False)
    if count == 0:
        return mask.copy()
    # Background components that reach any face of the volume are "outside"; the rest are holes.
    on_border = np.zeros(count + 1, dtype=bool)
    for face in (
        labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]
    ):
        on_border[np.unique(face)] = True
    on_border[0] = True  # label 0 is the foreground itself
    return mask | ~on_border[labels]


def _check_point(index_zyx: Sequence[float]) -> np.ndarray:
    point = np.asarray(index_zyx, dtype=np.float64)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise ValueError(f"index_zyx must be 3 finite numbers (z, y, x), got {index_zyx!r}")
    return point


def _label_at_or_nearest(labels: np.ndarray, point: np.ndarray, scale: np.ndarray) -> int:
    """The component label at the voxel nearest `point`, else of the nearest labelled voxel."""
    voxel = np.floor(point + 0.5).astype(np.int64)
    if np.all(voxel >= 0) and np.all(voxel < np.asarray(labels.shape)):
        hit = int(labels[tuple(voxel)])
        if hit:
            return hit
    # Nearest foreground voxel: squared distance accumulated axis by axis, O(foreground) memory.
    coords = np.nonzero(labels)
    dist2 = np.zeros(coords[0].shape, dtype=np.float64)
    for axis in range(3):
        dist2 += ((coords[axis] - point[axis]) * scale[axis]) ** 2
    nearest = int(np.argmin(dist2))
    return int(labels[coords[0][nearest], coords[1][nearest], coords[2][nearest]])


def _spacing_scale(spacing_zyx: Sequence[float] | None) -> np.ndarray:
    scale = np.ones(3) if spacing_zyx is None else np.asarray(spacing_zyx, dtype=np.float64)
    if scale.shape != (3,) or np.any(scale <= 0):
        raise ValueError(f"spacing_zyx must be 3 positive numbers, got {spacing_zyx!r}")
    return scale


def component_at_point(
    mask: np.ndarray,
    index_zyx: Sequence[float],
    spacing_zyx: Sequence[float] | None = None,
) -> np.ndarray:
    """The 26-connected component containing voxel ``index_zyx``, else the nearest one.

    ``index_zyx`` is a (z, y, x) voxel index (may be fractional and may lie outside the array).
    If the voxel at the rounded index is foreground, its component is returned. Otherwise the
    component with the foreground voxel centre closest to the point (Euclidean; in index units,
    or in mm if ``spacing_zyx`` is given -- use it for anisotropic scans) is returned. Empty
    mask -> all False.
    """
    return components_at_points(mask, [index_zyx], spacing_zyx)


def components_at_points(
    mask: np.ndarray,
    points_zyx: Sequence[Sequence[float]],
    spacing_zyx: Sequence[float] | None = None,
) -> np.ndarray:
    """The union of ``component_at_point`` over several points, labelling the mask once.

    Click-to-segment keeps what the user's include clicks touch: every component under (or,
    failing that, nearest to) a click, and nothing else. No points -> all False.
    """
    mask = _as_mask(mask)
    points = [_check_point(p) for p in points_zyx]
    scale = _spacing_scale(spacing_zyx)
    labels, count = _label_components(mask, fully_connected=True)
    if count == 0 or not points:
        return np.zeros_like(mask)
    keep = np.zeros(count + 1, dtype=bool)
    for point in points:
        keep[_label_at_or_nearest(labels, point, scale)] = True
    return keep[labels]


def components_overlapping(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 26-connected components of `mask` that share a voxel with `seeds` (same shape)."""
    mask = _as_mask(mask)
    labels, count = _label_components(mask, fully_connected=True)
    keep = np.zeros(count + 1, dtype=bool)
    keep[np.unique(labels[np.asarray(seeds, dtype=bool)])] = True
    keep[0] = False
    return keep[labels]


def postprocess_labelmap(
    labelmap: np.ndarray,
    keep_largest: bool = True,
    fill: bool = True,
    point_index_zyx: Sequence[float] | None = None,
    spacing_zyx: Sequence[float] | None = None,
) -> np.ndarray:
    """Clean a (z, y, x) multi-label map, separately for every label value > 0.

    Per label: with ``point_index_zyx`` keep the component at/nearest the point
    (``component_at_point``, distance in mm if ``spacing_zyx`` is given); otherwise, with
    ``keep_largest``, keep the largest component. Then, with ``fill``, fill its holes --
    but only where no other label is kept, so filling never overwrites another structure.
    Returns an array of the input's dtype and shape.
    """
    labelmap = np.asarray(labelmap)
    if labelmap.ndim != 3:
        raise ValueError(f"labelmap must be a 3D (z, y, x) array, got shape {labelmap.shape}")
    values = [v for v in np.unique(labelmap) if v > 0]
    out = np.zeros_like(labelmap)
    kept: dict = {}
    for value in values:
        mask = labelmap == value
        if point_index_zyx is not None:
            mask = component_at_point(mask, point_index_zyx, spacing_zyx)
        elif keep_largest:
            mask = largest_component(mask)
        kept[value] = mask
        out[mask] = value
    if fill:
        # Second pass so a hole is only filled where, after component selection, nothing is.
        for value, mask in kept.items():
            filled = fill_holes(mask) & ~mask & (out == 0)
            out[filled] = value
    return out
