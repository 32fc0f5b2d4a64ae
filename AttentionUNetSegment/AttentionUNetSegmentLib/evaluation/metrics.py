"""Overlap and surface-distance metrics for binary segmentations, in physical units (mm).

Masks are numpy arrays in SimpleITK order `(z, y, x)`; `spacing_zyx` is the voxel size in mm in
the same order (the reverse of `image.GetSpacing()`). Anything that is not zero is foreground.

Definitions (A = prediction, B = ground truth, S(X) = surface voxels of X):

- surface voxels: foreground voxels with at least one 6-connected neighbour outside the mask
  (the mask minus its 6-connected erosion; outside the array counts as background, so an object
  touching the border has a surface there);
- d(a, S(B)): Euclidean distance in mm between voxel centres, from a surface voxel of A to the
  nearest surface voxel of B (SimpleITK's exact Maurer distance transform with the voxel spacing,
  so anisotropic voxels are handled in physical space);
- Dice = 2 |A ∩ B| / (|A| + |B|); precision = |A ∩ B| / |A|; recall = |A ∩ B| / |B|;
- HD95 = max(P95{d(a, S(B)) : a in S(A)}, P95{d(b, S(A)) : b in S(B)}): the larger of the two
  directed 95th percentiles, as MONAI's `compute_hausdorff_distance(..., percentile=95)`
  (medpy's `hd95` instead takes the 95th percentile of both directions pooled; it is never
  larger than ours). Percentiles use numpy's default linear interpolation;
- ASSD = (sum of d(a, S(B)) over S(A) + sum of d(b, S(A)) over S(B)) / (|S(A)| + |S(B)|): the
  mean over all surface voxels of both masks pooled (Heimann et al. 2009, MONAI's
  `compute_average_surface_distance(..., symmetric=True)`; medpy's `assd` averages the two
  directed means instead, which differs when the surfaces have different sizes).

Empty masks (documented convention, also used by the CSV of `evaluation.py`):

- both empty: Dice, precision and recall 1.0, HD95 and ASSD 0.0 (a correct "nothing here");
- exactly one empty: Dice, precision and recall 0.0 (a miss or a pure false positive; the 0/0
  of precision with an empty prediction, or of recall with an empty truth, is taken as 0.0);
  HD95 and ASSD `inf` (written as "inf" in CSV files).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, PathLike
from ..core.geometry import grid_differences

METRIC_KEYS = ("dice", "hd95_mm", "assd_mm", "precision", "recall", "pred_volume_ml", "gt_volume_ml")


def _binary_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"masks have different shapes (z, y, x): {a.shape} vs {b.shape}")
    if a.ndim != 3:
        raise ValueError(f"masks must be 3D (z, y, x); got {a.ndim} dimensions")
    return a, b


def _spacing(spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
    spacing = tuple(float(s) for s in spacing_zyx)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_zyx must be three positive numbers in mm; got {spacing_zyx!r}")
    return spacing  # type: ignore[return-value]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A|+|B|) of two (z, y, x) masks; 1.0 when both are empty."""
    a, b = _binary_pair(a, b)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def precision(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of predicted voxels that are in the truth, |P∩T| / |P|.

    1.0 when both are empty; 0.0 when only the prediction is empty.
    """
    pred, truth = _binary_pair(pred, truth)
    n_pred = int(pred.sum())
    if n_pred == 0:
        return 1.0 if not truth.any() else 0.0
    return int(np.logical_and(pred, truth).sum()) / n_pred


def recall(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of truth voxels that were predicted (sensitivity), |P∩T| / |T|.

    1.0 when both are empty; 0.0 when only the truth is empty.
    """
    pred, truth = _binary_pair(pred, truth)
    n_truth = int(truth.sum())
    if n_truth == 0:
        return 1.0 if not pred.any() else 0.0
    return int(np.logical_and(pred, truth).sum()) / n_truth


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a (z, y, x) mask: the mask minus its 6-connected erosion.

    Voxels outside the array count as background, so an object cut by the array border has a
    surface on the border (as medpy and MONAI do). Works in any dimension (face neighbours
    only; 4-connected in 2D, which `figures.outline` uses).
    """
    mask = np.asarray(mask) != 0
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    interior = mask.copy()
    centre = (slice(1, -1),) * mask.ndim
    for axis in range(mask.ndim):
        for step in (-1, 1):
            index = list(centre)
            index[axis] = slice(1 + step, padded.shape[axis] - 1 + step)
            interior &= padded[tuple(index)]
    return mask & ~interior


def _distance_to(target_surface: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Distance in mm from every voxel to the nearest `True` voxel of `target_surface`.

    Maurer's transform is exact; Danielsson's (the other SimpleITK choice) is off by up to
    ~0.2 voxel in 3D, which is not acceptable for a metric.
    """
    image = sitk.GetImageFromArray(target_surface.astype(np.uint8))
    image.SetSpacing(tuple(reversed(spacing_zyx)))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True, backgroundValue=0.0)
    # Every voxel of a surface image has a background face neighbour, so each one is a contour
    # voxel of the transform: |value| is the distance to the nearest surface voxel. The transform
    # is float32, so voxels on the surface come out as ~1e-6 instead of 0: set them exactly.
    result = np.abs(sitk.GetArrayFromImage(distance).astype(np.float64))
    result[target_surface] = 0.0
    return result


def surface_distances(a: np.ndarray, b: np.ndarray,
                      spacing_zyx: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm between two (z, y, x) masks.

    Returns `(a_to_b, b_to_a)`: for every surface voxel of `a` the distance to the nearest surface
    voxel of `b`, and the reverse (1D float64 arrays, in the C order of the voxels). If either mask
    is empty both arrays are empty: a distance to nothing is undefined (see the module docstring
    for how `hd95`/`assd` report that).
    """
    a, b = _binary_pair(a, b)
    spacing = _spacing(spacing_zyx)
    surface_a, surface_b = surface(a), surface(b)
    if not surface_a.any() or not surface_b.any():
        return np.zeros(0), np.zeros(0)
    # Distances between the two surfaces never leave the bounding box of their union, so the
    # transforms run on that box only (a pancreas is a small part of an abdominal CT).
    union = surface_a | surface_b
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(union))
    surface_a, surface_b = surface_a[box], surface_b[box]
    a_to_b = _distance_to(surface_b, spacing)[surface_a]
    b_to_a = _distance_to(surface_a, spacing)[surface_b]
    return a_to_b, b_to_a


def _both_or_one_empty(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """0.0 if both masks are empty, inf if exactly one is, None if neither."""
    empty_a, empty_b = not a.any(), not b.any()
    if empty_a and empty_b:
        return 0.0
    if empty_a or empty_b:
        return float("inf")
    return None


def hd95(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float], percentile: float = 95.0) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (max of the two directed percentiles).

    `percentile=100` gives the classic (maximum) Hausdorff distance. 0.0 if both masks are
    empty, inf if exactly one is.
    """
    a, b = _binary_pair(a, b)
    special = _both_or_one_empty(a, b)
    if special is not None:
        return special
    a_to_b, b_to_a = surface_distances(a, b, spacing_zyx)
    return float(max(np.percentile(a_to_b, percentile), np.percentile(b_to_a, percentile)))


def assd(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """Average symmetric surface distance in mm (mean over both surfaces pooled).

    0.0 if both masks are empty, inf if exactly one is.
    """
    a, b = _binary_pair(a, b)
    special = _both_or_one_empty(a, b)
    if special is not None:
        return special
    a_to_b, b_to_a = surface_distances(a, b, spacing_zyx)
    return float((a_to_b.sum() + b_to_a.sum()) / (a_to_b.size + b_to_a.size))


def volume_ml(mask: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """Volume of the foreground in millilitres (1 mL = 1000 mm³)."""
    return int(np.count_nonzero(mask)) * float(np.prod(_spacing(spacing_zyx))) / 1000.0


def compute_all(pred: np.ndarray, truth: np.ndarray, spacing_zyx: Sequence[float]) -> dict[str, float]:
    """Every metric of `METRIC_KEYS` for one pair of (z, y, x) masks, surface distances computed once."""
    pred, truth = _binary_pair(pred, truth)
    special = _both_or_one_empty(pred, truth)
    if special is None:
        a_to_b, b_to_a = surface_distances(pred, truth, spacing_zyx)
        hd = float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))
        mean = float((a_to_b.sum() + b_to_a.sum()) / (a_to_b.size + b_to_a.size))
    else:
        hd = mean = special
    return {
        "dice": dice(pred, truth),
        "hd95_mm": hd,
        "assd_mm": mean,
        "precision": precision(pred, truth),
        "recall": recall(pred, truth),
        "pred_volume_ml": volume_ml(pred, spacing_zyx),
        "gt_volume_ml": volume_ml(truth, spacing_zyx),
    }


def label_mask(image: sitk.Image, label: Union[int, Sequence[int]], path: Optional[PathLike] = None) -> np.ndarray:
    """(z, y, x) boolean mask of the voxels equal to `label` (or to any of several values).

    Floating-point labelmaps (some tools save labels as float) are accepted when every value is
    a whole number; non-integer or negative values mean the file is not a labelmap (a
    probability map, a CT) and raise InputError.
    """
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                               "expected a labelmap with one value per voxel")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise InputError(path, "contains non-integer values; expected a labelmap "
                               "(is this a probability map or a CT?)")
    # Label values are never negative; a CT is (air is -1000 HU). Catching it here beats
    # silently scoring the voxels that happen to be 1 HU.
    if array.size and array.min() < 0:
        raise InputError(path, "contains negative values; expected a labelmap (is this the CT?)")
    values = [label] if np.isscalar(label) else list(label)
    return np.isin(array, values)


def evaluate_pair(pred_image: sitk.Image, gt_image: sitk.Image, label: Union[int, Sequence[int]] = 1,
                  gt_label: Union[int, Sequence[int], None] = None, pred_path: Optional[PathLike] = None,
                  gt_path: Optional[PathLike] = None) -> dict[str, float]:
    """Metrics of one prediction against its ground truth, both SimpleITK labelmaps.

    `label` selects the prediction voxels and `gt_label` (default: `label`) the ground-truth
    voxels, so multi-label files (e.g. TotalSegmentator, pancreas = 7) can be compared with a
    binary prediction; a sequence of values selects their union (Decathlon Task07: (1, 2)).
    The images must be on the same voxel grid (size, spacing, origin, direction, within small
    tolerances); otherwise InputError names every difference. The paths only make messages
    name the files. Returns the `METRIC_KEYS` (distances in mm, volumes in mL).
    """
    gt_label = label if gt_label is None else gt_label
    if pred_image.GetDimension() != 3 or gt_image.GetDimension() != 3:
        which = pred_path if pred_image.GetDimension() != 3 else gt_path
        raise InputError(which, "expected a 3D labelmap")
    # geometry's default tolerances are the strict ones: a prediction and its truth should share
    # one grid exactly, up to NIfTI's float32 rounding.
    differences = grid_differences(pred_image, gt_image)
    if differences:
        against = f" ({gt_path})" if gt_path is not None else ""
        raise InputError(pred_path, f"prediction and ground truth{against} are on different grids: "
                                    + "; ".join(differences)
                                    + ". Resample the prediction onto the ground-truth grid first")
    pred = label_mask(pred_image, label, pred_path)
    truth = label_mask(gt_image, gt_label, gt_path)
    spacing_zyx = tuple(reversed(gt_image.GetSpacing()))
    return compute_all(pred, truth, spacing_zyx)
