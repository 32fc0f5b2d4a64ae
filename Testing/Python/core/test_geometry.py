"""geometry.py: orientation, corner-anchored resampling, coarse grids, points and crops.

Synthetic volumes use the four orientations a scanner/converter can produce -- LPS (identity),
RAS (diag(-1, -1, 1) in SimpleITK's LPS space), permuted axes, and oblique (20 degrees about
an arbitrary axis on top of a permutation) -- with anisotropic spacing (0.7, 0.7, 2.5) mm (x, y, z).
Arrays are (z, y, x); SimpleITK tuples are (x, y, z).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.geometry import (
    coarse_grid,
    crop_around_point,
    describe_grid,
    grid_differences,
    lps_to_index,
    ras_to_lps,
    resample_to_spacing,
    to_canonical,
)

# --------------------------------------------------------------------------- synthetic grids


def rotation(axis, degrees: float) -> np.ndarray:
    """Rodrigues rotation matrix about `axis` (any length)."""
    k = np.asarray(axis, dtype=np.float64)
    k /= np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = math.radians(degrees)
    return np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * kx @ kx


# Index x runs along +P, y along -S, z along -L: axes swapped and flipped (det +1).
PERMUTED = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
DIRECTIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "permuted": PERMUTED,
    "oblique": rotation((1.0, 2.0, 3.0), 20.0) @ PERMUTED,
}
SPACING_XYZ = (0.7, 0.7, 2.5)


def make_image(
    size_xyz, spacing_xyz, direction: np.ndarray, centre_lps=(10.0, -20.0, 30.0),
    pixel=sitk.sitkFloat32,
) -> sitk.Image:
    """Zero image whose voxel-centre box is centred on `centre_lps`."""
    image = sitk.Image([int(v) for v in size_xyz], pixel)
    image.SetSpacing([float(v) for v in spacing_xyz])
    image.SetDirection(direction.ravel().tolist())
    half = direction @ ((np.asarray(size_xyz) - 1) / 2.0 * np.asarray(spacing_xyz))
    image.SetOrigin((np.asarray(centre_lps) - half).tolist())
    return image


def physical_coordinates(image: sitk.Image) -> np.ndarray:
    """(z, y, x, 3) array of the LPS position of every voxel centre."""
    size_xyz = image.GetSize()
    kz, ky, kx = np.meshgrid(*(np.arange(n) for n in reversed(size_xyz)), indexing="ij")
    index_xyz = np.stack([kx, ky, kz], axis=-1).astype(np.float64)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    offsets = (index_xyz * np.asarray(image.GetSpacing())) @ direction.T
    return np.asarray(image.GetOrigin()) + offsets


def corner(image: sitk.Image) -> np.ndarray:
    """Outer corner of the grid: origin - D @ spacing/2 (LPS)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return np.asarray(image.GetOrigin()) - direction @ (0.5 * np.asarray(image.GetSpacing()))


def with_array(reference: sitk.Image, array_zyx: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.CopyInformation(reference)
    return image


# --------------------------------------------------------------------------- to_canonical


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_to_canonical_is_lossless_and_keeps_physical_positions(name: str) -> None:
    direction = DIRECTIONS[name]
    reference = make_image((13, 11, 7), SPACING_XYZ, direction, pixel=sitk.sitkInt16)
    rng = np.random.default_rng(0)
    values = rng.integers(-1000, 1000, size=(7, 11, 13)).astype(np.int16)
    marked_zyx = {(2, 3, 5): 30001, (6, 0, 12): 30002, (0, 10, 0): 30003}
    for idx, v in marked_zyx.items():
        values[idx] = v
    image = with_array(reference, values)

    canonical = to_canonical(image)

    out = sitk.GetArrayFromImage(canonical)
    assert canonical.GetPixelID() == sitk.sitkInt16
    # Lossless: the same voxel values (as a multiset), nothing interpolated.
    np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(values, axis=None))
    # Every marked voxel is at the same physical point after reordering.
    for idx_zyx, v in marked_zyx.items():
        found = np.argwhere(out == v)
        assert len(found) == 1
        before = image.TransformIndexToPhysicalPoint([int(i) for i in reversed(idx_zyx)])
        after = canonical.TransformIndexToPhysicalPoint([int(i) for i in reversed(found[0])])
        np.testing.assert_allclose(after, before, atol=1e-9)

    d = np.asarray(canonical.GetDirection()).reshape(3, 3)
    if name == "oblique":
        # Only permuted/flipped: the 20 degree rotation remains, but each index axis now points
        # mostly along its own LPS axis, positively.
        assert np.all(np.argmax(np.abs(d), axis=0) == [0, 1, 2])
        assert np.all(np.diag(d) > 0.9)
        np.testing.assert_allclose(abs(np.linalg.det(d)), 1.0, atol=1e-9)
    else:
        np.testing.assert_allclose(d, np.eye(3), atol=1e-12)
    # Spacing is permuted with the axes, never changed.
    assert sorted(canonical.GetSpacing()) == sorted(SPACING_XYZ)


def test_to_canonical_of_canonical_is_identity_operation() -> None:
    image = make_image((5, 6, 7), (1.0, 2.0, 3.0), np.eye(3))
    assert grid_differences(to_canonical(image), image, spacing_rtol=0.0, origin_tol_voxels=0.0,
                            direction_tol=0.0) == []


# --------------------------------------------------------------------------- resample_to_spacing


@pytest.mark.parametrize("name", list(DIRECTIONS))
@pytest.mark.parametrize("spacing_zyx", [(1.5, 1.5, 1.5), (1.0, 0.35, 1.4)])
def test_resample_keeps_corner_direction_and_field_of_view(name, spacing_zyx) -> None:
    image = make_image((41, 37, 9), SPACING_XYZ, DIRECTIONS[name])
    out = resample_to_spacing(image, spacing_zyx)

    spacing_xyz = tuple(reversed(spacing_zyx))
    assert out.GetSpacing() == pytest.approx(spacing_xyz, abs=1e-12)
    assert out.GetDirection() == image.GetDirection()
    expected_size = [
        max(1, round(n * s / t)) for n, s, t in zip(image.GetSize(), SPACING_XYZ, spacing_xyz)
    ]
    assert list(out.GetSize()) == expected_size
    # The documented anchor: the outer corner is unchanged ...
    np.testing.assert_allclose(corner(out), corner(image), atol=1e-9)
    # ... and the far edge moves by at most half a new voxel along each axis.
    far_in = np.asarray(image.GetSize()) * np.asarray(SPACING_XYZ)
    far_out = np.asarray(out.GetSize()) * np.asarray(spacing_xyz)
    assert np.all(np.abs(far_out - far_in) <= 0.5 * np.asarray(spacing_xyz) + 1e-9)


@pytest.mark.parametrize("name", ["RAS", "oblique"])
def test_resample_linear_ramp_is_exact(name) -> None:
    """A field linear in physical space is reproduced exactly by linear interpolation."""
    image = make_image((30, 26, 10), SPACING_XYZ, DIRECTIONS[name])
    gradient = np.array([0.8, -0.5, 1.3])
    image = with_array(image, (physical_coordinates(image) @ gradient).astype(np.float64))
    out = resample_to_spacing(image, (2.0, 1.1, 1.1), default_value=-1e6)
    expected = physical_coordinates(out) @ gradient
    got = sitk.GetArrayFromImage(out)
    # New centres lie inside the old extent (never default_value); in the interior (between the
    # outermost old voxel centres) linear interpolation of a linear field is exact.
    assert got.min() > -1e5
    index_xyz = (physical_coordinates(out) - np.asarray(image.GetOrigin())) @ np.asarray(
        image.GetDirection()
    ).reshape(3, 3) / np.asarray(SPACING_XYZ)
    inside = np.all((index_xyz >= 0) & (index_xyz <= np.asarray(image.GetSize()) - 1), axis=-1)
    assert inside.mean() > 0.7
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-6)


def test_resample_antialias_suppresses_aliasing_and_keeps_smooth_fields() -> None:
    """Downsampling 0.5 mm -> 2 mm along x: a 2 mm-period wave must not alias into the result."""
    image = make_image((96, 40, 8), (0.5, 1.0, 1.0), np.eye(3))
    x = np.arange(96)
    # New voxel centres sit at 0.75 + 2k mm from the first old centre (corner anchoring); put
    # the wave's crests there so that plain interpolation aliases it into a constant offset.
    wave = (100.0 * np.cos(2 * np.pi * (0.5 * x - 0.75) / 2.0)).astype(np.float32)
    stripes = with_array(image, np.broadcast_to(wave, (8, 40, 96)).copy())
    plain = sitk.GetArrayFromImage(resample_to_spacing(stripes, (1.0, 1.0, 2.0)))
    smooth = sitk.GetArrayFromImage(resample_to_spacing(stripes, (1.0, 1.0, 2.0), antialias=True))
    interior = (slice(None), slice(None), slice(4, -4))
    # The wave's true mean is 0; plain sampling reports ~+70 everywhere (pure alias), the
    # Gaussian (sigma 0.75 mm) attenuates it to exp(-2 pi^2 sigma^2 f^2) ~ 6 %.
    assert plain[interior].mean() > 60
    assert np.abs(smooth[interior]).mean() < 10
    assert smooth.dtype == np.float32

    # A linear ramp is unchanged by the Gaussian (away from the borders).
    ramp_x = (x * 0.5 * 3.0).astype(np.float32)
    ramp = with_array(image, np.broadcast_to(ramp_x, (8, 40, 96)).copy())
    out = resample_to_spacing(ramp, (1.0, 1.0, 2.0), antialias=True)
    expected = physical_coordinates(out)[..., 0] * 3.0 - image.GetOrigin()[0] * 3.0
    got = sitk.GetArrayFromImage(out)
    np.testing.assert_allclose(got[:, :, 3:-3], expected[:, :, 3:-3], atol=1e-2)


def test_resample_rejects_bad_spacing() -> None:
    image = make_image((4, 4, 4), (1.0, 1.0, 1.0), np.eye(3))
    for bad in [(1.0, 0.0, 1.0), (1.0, -2.0, 1.0), (1.0, float("nan"), 1.0), (1.0, 2.0)]:
        with pytest.raises(ValueError):
            resample_to_spacing(image, bad)


# --------------------------------------------------------------------------- coarse_grid


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_coarse_grid_voxel_centres_are_block_centres(scale: int) -> None:
    fine = make_image((19, 16, 13), SPACING_XYZ, DIRECTIONS["oblique"])
    grid = coarse_grid(fine, scale)
    assert list(grid.GetSize()) == [math.ceil(n / scale) for n in fine.GetSize()]
    assert grid.GetSpacing() == pytest.approx([s * scale for s in SPACING_XYZ], abs=1e-12)
    assert grid.GetDirection() == fine.GetDirection()
    np.testing.assert_allclose(corner(grid), corner(fine), atol=1e-9)
    for i_xyz in [(0, 0, 0), (1, 0, 1), tuple(n - 1 for n in grid.GetSize())]:
        block_centre = [scale * i + (scale - 1) / 2 for i in i_xyz]
        np.testing.assert_allclose(
            grid.TransformIndexToPhysicalPoint(i_xyz),
            fine.TransformContinuousIndexToPhysicalPoint(block_centre),
            atol=1e-9,
        )


def test_coarse_grid_rejects_bad_scale() -> None:
    fine = make_image((8, 8, 8), (1.0, 1.0, 1.0), np.eye(3))
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError):
            coarse_grid(fine, bad)


# --------------------------------------------------------------------------- points and crops


def test_ras_to_lps() -> None:
    assert ras_to_lps((1.5, -2.0, 3.0)) == (-1.5, 2.0, 3.0)
    assert ras_to_lps(np.array([0.0, 0.0, -7.0])) == (0.0, 0.0, -7.0)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_lps_to_index_is_zyx_and_continuous(name: str) -> None:
    image = make_image((20, 15, 9), SPACING_XYZ, DIRECTIONS[name])
    index_xyz = (3.25, 11.0, 4.5)
    point = image.TransformContinuousIndexToPhysicalPoint(index_xyz)
    np.testing.assert_allclose(lps_to_index(image, point), index_xyz[::-1], atol=1e-9)


@pytest.mark.parametrize("name", ["RAS", "oblique"])
def test_crop_around_point_contains_point_and_keeps_voxels(name: str) -> None:
    image = make_image((60, 50, 20), SPACING_XYZ, DIRECTIONS[name])
    values = np.arange(60 * 50 * 20, dtype=np.float32).reshape(20, 50, 60)
    image = with_array(image, values)
    point = image.TransformContinuousIndexToPhysicalPoint((30.3, 24.8, 9.6))

    crop = crop_around_point(image, point, (20.0, 14.0, 10.0))  # z, y, x in mm

    expected_size_xyz = [math.ceil(10.0 / 0.7), math.ceil(14.0 / 0.7), math.ceil(20.0 / 2.5)]
    assert list(crop.GetSize()) == expected_size_xyz
    assert crop.GetSpacing() == image.GetSpacing()
    assert crop.GetDirection() == image.GetDirection()
    index_in_crop = np.asarray(lps_to_index(crop, point))
    crop_shape_zyx = np.asarray(crop.GetSize())[::-1]
    assert np.all(index_in_crop >= -0.5) and np.all(index_in_crop <= crop_shape_zyx - 0.5)
    # Centred: the point is within one voxel of the crop's centre along every axis.
    assert np.all(np.abs(index_in_crop - (np.asarray(crop.GetSize())[::-1] - 1) / 2) <= 1.0)
    # Same voxels at the same physical places (the crop is a sub-lattice of the input).
    offset_xyz = image.TransformPhysicalPointToIndex(crop.GetOrigin())
    np.testing.assert_allclose(
        image.TransformIndexToPhysicalPoint(offset_xyz), crop.GetOrigin(), atol=1e-9
    )
    z, y, x = reversed(offset_xyz)
    nz, ny, nx = reversed(crop.GetSize())
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(crop), values[z:z + nz, y:y + ny, x:x + nx]
    )


def test_crop_around_point_clamps_at_borders() -> None:
    image = make_image((60, 50, 20), SPACING_XYZ, DIRECTIONS["oblique"])
    near_corner = image.TransformContinuousIndexToPhysicalPoint((1.0, 48.9, 0.0))
    crop = crop_around_point(image, near_corner, 30.0)  # a 30 mm cube
    offset_xyz = image.TransformPhysicalPointToIndex(crop.GetOrigin())
    assert offset_xyz[0] == 0 and offset_xyz[2] == 0
    full_xyz = [math.ceil(30.0 / s) for s in SPACING_XYZ]
    size_xyz = crop.GetSize()
    assert size_xyz[0] < full_xyz[0] and size_xyz[2] < full_xyz[2]
    assert offset_xyz[1] + size_xyz[1] == 50  # clamped at the far y border
    index = np.asarray(lps_to_index(crop, near_corner))
    assert np.all(index >= -0.5) and np.all(index <= np.asarray(size_xyz)[::-1] - 0.5)
    # A point on the outer voxel edge still counts as inside.
    edge = image.TransformContinuousIndexToPhysicalPoint((-0.5, 10.0, 10.0))
    assert crop_around_point(image, edge, 5.0).GetSize()[0] >= 1


def test_crop_around_point_outside_raises_input_error() -> None:
    image = make_image((60, 50, 20), SPACING_XYZ, DIRECTIONS["RAS"])
    outside = image.TransformContinuousIndexToPhysicalPoint((30.0, 25.0, 21.0))
    with pytest.raises(InputError, match="lies outside the image") as info:
        crop_around_point(image, outside, (40.0, 40.0, 40.0))
    assert info.value.path is None
    assert str(info.value).startswith("point (")


# --------------------------------------------------------------------------- grid helpers


def test_grid_differences_default_tolerance_and_describe_grid() -> None:
    a = make_image((10, 11, 12), SPACING_XYZ, DIRECTIONS["RAS"])
    b = make_image((10, 11, 12), SPACING_XYZ, DIRECTIONS["RAS"])
    assert grid_differences(a, b) == []
    b.SetOrigin([v + 1e-7 for v in a.GetOrigin()])          # float32 rounding: same grid
    assert grid_differences(a, b) == []
    b.SetOrigin([v + 1e-2 for v in a.GetOrigin()])
    assert grid_differences(a, b)[0].startswith("origin")
    assert grid_differences(a, make_image((10, 11, 13), SPACING_XYZ, DIRECTIONS["RAS"]))
    assert grid_differences(a, make_image((10, 11, 12), SPACING_XYZ, DIRECTIONS["LPS"]))
    text = describe_grid(a)
    assert "size_xyz=(10, 11, 12)" in text and "spacing_xyz=(0.7, 0.7, 2.5)" in text
    assert "direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)" in text


def test_grid_differences_names_each_difference_within_given_tolerances(tmp_path) -> None:
    a = make_image((10, 11, 12), SPACING_XYZ, DIRECTIONS["RAS"])
    assert grid_differences(a, a) == []
    b = make_image((10, 11, 13), (0.7, 0.7, 3.0), DIRECTIONS["LPS"])
    b.SetOrigin([v + 5.0 for v in a.GetOrigin()])
    problems = grid_differences(a, b)
    assert [p.split()[0] for p in problems] == ["size", "spacing", "origin", "direction"]
    assert problems[0] == "size (10, 11, 12) vs (10, 11, 13) voxels (x, y, z)"
    assert problems[1] == "spacing (0.7, 0.7, 2.5) vs (0.7, 0.7, 3) mm (x, y, z)"

    # An origin 3 % of a voxel off: a rounding difference for a loose caller, a real one for
    # a strict caller (the default, 1 %).
    shifted = make_image((10, 11, 12), SPACING_XYZ, DIRECTIONS["RAS"])
    shifted.SetOrigin([v + 0.03 * 0.7 for v in a.GetOrigin()])
    assert [p.split()[0] for p in grid_differences(a, shifted)] == ["origin"]
    assert grid_differences(a, shifted, origin_tol_voxels=0.05) == []

    # Header readers (no voxels read) compare like images.
    sitk.WriteImage(a, str(tmp_path / "a.nrrd"))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(tmp_path / "a.nrrd"))
    reader.ReadImageInformation()
    assert grid_differences(reader, a) == []
    assert grid_differences(reader, sitk.Image(4, 4, sitk.sitkUInt8)) == ["dimension 3 vs 2"]
