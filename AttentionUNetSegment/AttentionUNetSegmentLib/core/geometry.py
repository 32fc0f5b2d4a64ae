"""Image geometry: canonical orientation, resampling, coarse grids, RAS/LPS, crops.

Conventions (see docs/architecture.md):

- Every image here is a 3D ``SimpleITK.Image``; physical space is SimpleITK's LPS (mm).
- Arguments named ``*_zyx`` are in numpy order ``(z, y, x)`` (``sitk.GetArrayFromImage``);
  SimpleITK's own ``GetSize()/GetSpacing()/GetOrigin()`` are ``(x, y, z)`` and are converted
  explicitly; local variables say which order they hold (``*_xyz`` / ``*_zyx``).
- A grid is (size, spacing, origin, direction). ``origin`` is the physical centre of voxel
  ``(0, 0, 0)``; the voxel's outer edge ("corner") is ``origin - direction @ (spacing / 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError

__all__ = [
    "to_canonical",
    "resample_to_spacing",
    "coarse_grid",
    "ras_to_lps",
    "lps_to_index",
    "crop_around_point",
    "grid_differences",
    "describe_grid",
]


# --------------------------------------------------------------------------- helpers


def _direction_matrix(image: sitk.Image) -> np.ndarray:
    """3x3 direction matrix; column ``k`` is the physical direction of index axis ``k`` (x,y,z)."""
    return np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)


def _check_3d(image: sitk.Image, what: str = "image") -> None:
    if not isinstance(image, sitk.Image):
        raise TypeError(f"{what} must be a SimpleITK.Image, got {type(image).__name__}")
    if image.GetDimension() != 3:
        raise ValueError(f"{what} must be 3D, got {image.GetDimension()}D")


def _as_spacing_xyz(spacing_zyx: Sequence[float] | float) -> np.ndarray:
    """Validate a (z, y, x) spacing (or one isotropic value) and return it as (x, y, z)."""
    values = np.atleast_1d(np.asarray(spacing_zyx, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing_zyx must be 3 positive finite numbers (mm), got {spacing_zyx!r}")
    return values[::-1].copy()


# --------------------------------------------------------------------------- orientation


def to_canonical(image: sitk.Image) -> sitk.Image:
    """Permute/flip the index axes so the image is as close to LPS-aligned as possible.

    Uses ``sitk.DICOMOrient(image, "LPS")``: index x runs towards Left, y towards Posterior,
    z towards Superior. This is lossless -- voxels are only reordered, never interpolated,
    and every voxel keeps its physical position (origin and direction are updated to match).
    For an oblique scan only the closest permutation/flip is applied; the residual rotation
    stays in the direction matrix (which is then close to, but not exactly, the identity).
    Pixel type is unchanged.
    """
    _check_3d(image)
    return sitk.DICOMOrient(image, "LPS")


# --------------------------------------------------------------------------- resampling


def _antialias(image: sitk.Image, new_spacing_xyz: np.ndarray) -> sitk.Image:
    """Gaussian pre-filter along each axis that is being downsampled.

    sigma = (new/old - 1)/2 old voxels, i.e. (new - old)/2 mm; a common, cheap choice that
    suppresses aliasing without visibly blurring what the coarse grid can represent. The
    recursive (IIR) Gaussian costs a few passes over the volume regardless of sigma.
    """
    old_spacing_xyz = np.asarray(image.GetSpacing(), dtype=np.float64)
    size_xyz = image.GetSize()
    out = image
    for axis in range(3):
        sigma_mm = 0.5 * (new_spacing_xyz[axis] - old_spacing_xyz[axis])
        # The ITK filter needs >= 4 voxels along the axis; a 0.5-voxel sigma is negligible.
        if sigma_mm > 0.25 * old_spacing_xyz[axis] and size_xyz[axis] >= 4:
            if out.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
                out = sitk.Cast(out, sitk.sitkFloat32)
            out = sitk.RecursiveGaussian(out, sigma=float(sigma_mm), direction=axis)
    return out


def resample_to_spacing(
    image: sitk.Image,
    spacing_zyx: Sequence[float] | float,
    interpolator: int = sitk.sitkLinear,
    default_value: float = 0.0,
    *,
    antialias: bool = False,
) -> sitk.Image:
    """Resample ``image`` onto a grid with spacing ``spacing_zyx`` (mm, order z, y, x).

    The new grid keeps the direction and the physical field of view:

    - size per axis = ``max(1, round(old_size * old_spacing / new_spacing))``;
    - the outer corner of the grid (``origin - direction @ spacing/2``, the outer edge of
      voxel 0) is the same as the input's, so both grids start at the same physical place.
      The new origin is therefore ``old_origin + direction @ ((new_spacing - old_spacing)/2)``.
      We anchor the corner (not the first voxel centre) because that is what keeps the
      field of view: it makes downsampling by an integer factor equal to block averaging
      geometry (like ``coarse_grid``), and the far edge moves by at most half a new voxel
      (rounding of the size). Every new voxel centre lies inside the input's extent, so no
      output voxel is ``default_value`` unless the interpolator needs it.

    ``antialias=True`` smooths axes that are downsampled with a Gaussian of
    sigma = (new - old)/2 mm before interpolation (intensity images only; never for labels).
    The output pixel type is the input's, except that antialiasing yields float32.
    """
    _check_3d(image)
    new_spacing_xyz = _as_spacing_xyz(spacing_zyx)
    old_spacing_xyz = np.asarray(image.GetSpacing(), dtype=np.float64)
    old_size_xyz = np.asarray(image.GetSize(), dtype=np.float64)
    direction = _direction_matrix(image)

    new_size_xyz = [
        max(1, int(round(n * s_old / s_new)))
        for n, s_old, s_new in zip(old_size_xyz, old_spacing_xyz, new_spacing_xyz)
    ]
    # Corner-anchored: origin - D @ (s/2) is invariant.
    new_origin_xyz = np.asarray(image.GetOrigin(), dtype=np.float64) + direction @ (
        0.5 * (new_spacing_xyz - old_spacing_xyz)
    )

    source = _antialias(image, new_spacing_xyz) if antialias else image
    output_type = source.GetPixelID()
    return sitk.Resample(
        source,
        new_size_xyz,
        sitk.Transform(),
        interpolator,
        new_origin_xyz.tolist(),
        new_spacing_xyz.tolist(),
        list(image.GetDirection()),
        float(default_value),
        output_type,
    )


def coarse_grid(reference: sitk.Image, scale: int) -> sitk.Image:
    """Empty uint8 image: the grid of a map downsampled ``scale`` times from ``reference``.

    Voxel ``i`` (any axis) of the coarse grid is centred on fine index ``scale*i + (scale-1)/2``
    -- the centre of the block of ``scale`` fine voxels it summarises (max/average pooling with
    stride ``scale``; trilinear upsampling with ``align_corners=False`` is its inverse).
    Coarse size = ``ceil(fine_size / scale)``, spacing = ``scale * fine_spacing``, same
    direction; the coarse grid's outer corner coincides with the fine grid's corner.
    Pixel values are zero and meaningless.
    """
    _check_3d(reference, "reference")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    fine_spacing_xyz = np.asarray(reference.GetSpacing(), dtype=np.float64)
    size_xyz = [int(math.ceil(n / scale)) for n in reference.GetSize()]
    direction = _direction_matrix(reference)
    origin_xyz = np.asarray(reference.GetOrigin(), dtype=np.float64) + direction @ (
        fine_spacing_xyz * (scale - 1) / 2.0
    )
    grid = sitk.Image(size_xyz, sitk.sitkUInt8)
    grid.SetSpacing((fine_spacing_xyz * scale).tolist())
    grid.SetOrigin(origin_xyz.tolist())
    grid.SetDirection(reference.GetDirection())
    return grid


# --------------------------------------------------------------------------- points


def ras_to_lps(point: Sequence[float]) -> tuple[float, float, float]:
    """Slicer RAS (R, A, S) -> SimpleITK LPS (-R, -A, S), in mm."""
    r, a, s = (float(v) for v in point)
    return (-r, -a, s)


def lps_to_index(image: sitk.Image, point_lps: Sequence[float]) -> tuple[float, float, float]:
    """Continuous voxel index ``(z, y, x)`` of a physical LPS point (any direction matrix).

    Integer values are voxel centres; the image covers ``-0.5 <= index <= size - 0.5``.
    """
    _check_3d(image)
    x, y, z = image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps])
    return (z, y, x)


def crop_around_point(
    image: sitk.Image, point_lps: Sequence[float], size_mm_zyx: Sequence[float] | float
) -> sitk.Image:
    """Sub-region of ``image`` (``sitk.RegionOfInterest``) of ``size_mm_zyx`` mm around a point.

    ``size_mm_zyx`` is (z, y, x) in mm along the image's index axes (one number = a cube).
    The box is ``ceil(size_mm / spacing)`` voxels per axis, centred on the voxel containing the
    point, and is clamped (intersected) with the image, so near a border the crop is smaller
    and the point is off-centre. The crop keeps the physical positions of its voxels (origin
    updated, same spacing and direction) and the pixel type.

    Raises ``InputError(None, "point ... lies outside the image ...")`` for a point outside
    the image's extent (beyond the outer voxel edges).
    """
    _check_3d(image)
    size_mm_xyz = _as_spacing_xyz(size_mm_zyx)  # same validation: 3 positive finite numbers
    index_xyz = np.asarray(lps_to_index(image, point_lps)[::-1], dtype=np.float64)
    size_xyz = np.asarray(image.GetSize(), dtype=np.int64)
    spacing_xyz = np.asarray(image.GetSpacing(), dtype=np.float64)

    # Tolerance so a point exactly on the outer edge (float round-off) still counts as inside.
    eps = 1e-6
    if np.any(index_xyz < -0.5 - eps) or np.any(index_xyz > size_xyz - 0.5 + eps):
        point = tuple(round(float(v), 3) for v in point_lps)
        raise InputError(
            None, f"point {point} (LPS, mm) lies outside the image ({describe_grid(image)})"
        )

    centre_xyz = np.clip(np.floor(index_xyz + 0.5).astype(np.int64), 0, size_xyz - 1)
    box_xyz = np.maximum(1, np.ceil(size_mm_xyz / spacing_xyz - 1e-9).astype(np.int64))
    start_xyz = centre_xyz - box_xyz // 2
    stop_xyz = start_xyz + box_xyz  # exclusive
    start_xyz = np.clip(start_xyz, 0, size_xyz - 1)
    stop_xyz = np.clip(stop_xyz, start_xyz + 1, size_xyz)
    return sitk.RegionOfInterest(
        image, (stop_xyz - start_xyz).tolist(), start_xyz.tolist()
    )


# --------------------------------------------------------------------------- grid comparison


def _fmt_xyz(values: Sequence[float]) -> str:
    # "+ 0.0" turns -0.0 into 0.0 so flipped axes print as "0", not "-0".
    return "(" + ", ".join(f"{float(v) + 0.0:.6g}" for v in values) + ")"


def grid_differences(
    a,
    b,
    *,
    spacing_rtol: float = 1e-4,
    origin_tol_voxels: float = 1e-2,
    direction_tol: float = 1e-4,
) -> list[str]:
    """Human-readable differences between the voxel grids of `a` and `b` (empty list: same grid).

    `a` and `b` are ``sitk.Image`` objects or ``sitk.ImageFileReader`` objects after
    ``ReadImageInformation()`` (header only, no voxels read). Each difference reads
    ``"spacing (a) vs (b) mm (x, y, z)"``: SimpleITK's (x, y, z) order and mm, as Slicer shows them.

    Tolerances, because NIfTI stores geometry in float32 and converters round differently:
    spacing relative per axis, origin as a fraction of the smallest voxel edge, direction
    absolute per cosine. The defaults are strict (evaluation: a prediction written onto its
    CT's grid); training's label check passes looser ones (`data.LABEL_GRID_TOLERANCES`).
    """
    if a.GetDimension() != b.GetDimension():
        return [f"dimension {a.GetDimension()} vs {b.GetDimension()}"]
    problems = []
    if tuple(a.GetSize()) != tuple(b.GetSize()):
        problems.append(f"size {_fmt_xyz(a.GetSize())} vs {_fmt_xyz(b.GetSize())} voxels (x, y, z)")
    spacing_a, spacing_b = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if not np.allclose(spacing_a, spacing_b, rtol=spacing_rtol, atol=0.0):
        problems.append(f"spacing {_fmt_xyz(spacing_a)} vs {_fmt_xyz(spacing_b)} mm (x, y, z)")
    origin_a, origin_b = np.array(a.GetOrigin()), np.array(b.GetOrigin())
    origin_tol = origin_tol_voxels * float(min(spacing_a.min(), spacing_b.min()))
    if np.abs(origin_a - origin_b).max() > origin_tol:
        problems.append(f"origin {_fmt_xyz(origin_a)} vs {_fmt_xyz(origin_b)} mm (LPS)")
    direction_a, direction_b = np.array(a.GetDirection()), np.array(b.GetDirection())
    if np.abs(direction_a - direction_b).max() > direction_tol:
        problems.append(f"direction {_fmt_xyz(direction_a)} vs {_fmt_xyz(direction_b)}")
    return problems


def describe_grid(image: sitk.Image) -> str:
    """One-line description of a grid for error messages (SimpleITK (x, y, z) order, mm)."""
    return (
        f"size_xyz={tuple(image.GetSize())}, spacing_xyz={_fmt_xyz(image.GetSpacing())} mm, "
        f"origin_xyz={_fmt_xyz(image.GetOrigin())} mm, direction={_fmt_xyz(image.GetDirection())}"
    )
