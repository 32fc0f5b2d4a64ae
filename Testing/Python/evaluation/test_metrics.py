"""Metrics against hand-computed cases, a brute-force reference, and the empty-mask conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.evaluation import metrics


def _cubes(axis: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 4x4x4-voxel cubes; the second is moved by `shift` voxels along `axis` (z=0, y=1, x=2)."""
    a = np.zeros((14, 14, 14), bool)
    a[1:5, 1:5, 1:5] = True
    return a, np.roll(a, shift, axis=axis)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_offset_cubes_known_hd95_and_assd_anisotropic(axis):
    # Cube B lies 6 voxels further along `axis` than cube A (no overlap). Voxel edge along that
    # axis: 2.5 mm; the other two axes: 0.7 mm, so a wrong axis order gives other numbers.
    spacing = [0.7, 0.7, 0.7]
    spacing[axis] = 2.5
    a, b = _cubes(axis, 6)
    # Surface of a 4-voxel cube: both end faces (16 voxels each) and the ring of the two middle
    # layers (12 each). The nearest surface voxel of the other cube is straight along `axis` on
    # its near face: 3, 4, 5, 6 layers away, i.e. 7.5, 10, 12.5, 15 mm (same in both directions).
    assert metrics.hd95(a, b, spacing) == pytest.approx(15.0, rel=1e-6)   # P95 of 56 values: 15
    assert metrics.hd95(a, b, spacing, percentile=100) == pytest.approx(15.0, rel=1e-6)
    expected_assd = (16 * 7.5 + 12 * 10.0 + 12 * 12.5 + 16 * 15.0) / 56   # 11.25 mm
    assert metrics.assd(a, b, spacing) == pytest.approx(expected_assd, rel=1e-6)
    a_to_b, b_to_a = metrics.surface_distances(a, b, spacing)
    assert sorted(np.round(a_to_b, 4)) == sorted([7.5] * 16 + [10.0] * 12 + [12.5] * 12 + [15.0] * 16)
    assert b_to_a.size == 56
    assert metrics.dice(a, b) == 0.0


def test_single_voxels_give_euclidean_distance_in_mm():
    a = np.zeros((5, 6, 7), bool)
    b = a.copy()
    a[1, 1, 1] = True
    b[4, 3, 5] = True
    spacing = (3.0, 0.5, 1.25)
    expected = math.sqrt((3 * 3.0) ** 2 + (2 * 0.5) ** 2 + (4 * 1.25) ** 2)
    assert metrics.hd95(a, b, spacing) == pytest.approx(expected, rel=1e-6)
    assert metrics.assd(a, b, spacing) == pytest.approx(expected, rel=1e-6)


def test_identical_masks_are_exactly_zero():
    a, _ = _cubes(0, 0)
    assert metrics.dice(a, a) == 1.0
    assert metrics.hd95(a, a, (2.0, 0.8, 0.8)) == 0.0
    assert metrics.assd(a, a, (2.0, 0.8, 0.8)) == 0.0
    assert metrics.precision(a, a) == metrics.recall(a, a) == 1.0


def test_half_overlapping_boxes_exact_dice_precision_recall():
    a = np.zeros((4, 10, 10), bool)
    b = a.copy()
    a[:, 0:4, :] = True      # 160 voxels
    b[:, 2:6, :] = True      # 160 voxels, half of them shared with a
    assert metrics.dice(a, b) == 0.5
    c = np.zeros_like(a)
    c[:, 2:4, :] = True      # inside a, half its size
    assert metrics.dice(c, a) == pytest.approx(2 * 80 / (80 + 160))
    assert metrics.precision(c, a) == 1.0
    assert metrics.recall(c, a) == 0.5


def test_surface_is_six_connected_shell_and_border_counts():
    cube = np.zeros((5, 5, 5), bool)
    cube[1:4, 1:4, 1:4] = True
    shell = metrics.surface(cube)
    assert shell.sum() == 26 and not shell[2, 2, 2]
    full = np.ones((3, 3, 3), bool)   # touches the array border everywhere: only the centre is inside
    assert metrics.surface(full).sum() == 26


def test_matches_brute_force_on_irregular_shapes():
    rng = np.random.default_rng(3)
    a = np.zeros((10, 14, 12), bool)
    b = a.copy()
    a[2:8, 3:11, 2:9] = True
    b[3:9, 4:13, 1:10] = True
    a &= rng.random(a.shape) < 0.85          # holes
    b |= rng.random(b.shape) < 0.01          # scattered false positives far from the object
    spacing = np.array([2.5, 0.8, 1.1])
    points_a = np.argwhere(metrics.surface(a)) * spacing
    points_b = np.argwhere(metrics.surface(b)) * spacing
    pairwise = np.sqrt(((points_a[:, None] - points_b[None]) ** 2).sum(-1))
    a_to_b, b_to_a = metrics.surface_distances(a, b, spacing)
    np.testing.assert_allclose(a_to_b, pairwise.min(1), atol=1e-4)
    np.testing.assert_allclose(b_to_a, pairwise.min(0), atol=1e-4)
    expected_hd95 = max(np.percentile(pairwise.min(1), 95), np.percentile(pairwise.min(0), 95))
    assert metrics.hd95(a, b, spacing) == pytest.approx(expected_hd95, abs=1e-4)
    expected_assd = (pairwise.min(1).sum() + pairwise.min(0).sum()) / (pairwise.shape[0] + pairwise.shape[1])
    assert metrics.assd(a, b, spacing) == pytest.approx(expected_assd, abs=1e-4)


def test_empty_mask_conventions():
    empty = np.zeros((4, 5, 6), bool)
    full = empty.copy()
    full[1:3, 1:4, 1:5] = True
    spacing = (1.0, 1.0, 1.0)
    # Both empty: a correct "nothing here".
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.hd95(empty, empty, spacing) == 0.0 and metrics.assd(empty, empty, spacing) == 0.0
    assert metrics.precision(empty, empty) == metrics.recall(empty, empty) == 1.0
    # One empty: distances are undefined and reported as inf; overlap scores are 0.
    for pred, truth in ((empty, full), (full, empty)):
        assert metrics.dice(pred, truth) == 0.0
        assert metrics.hd95(pred, truth, spacing) == math.inf
        assert metrics.assd(pred, truth, spacing) == math.inf
        assert metrics.precision(pred, truth) == 0.0 and metrics.recall(pred, truth) == 0.0
    a_to_b, b_to_a = metrics.surface_distances(empty, full, spacing)
    assert a_to_b.size == 0 and b_to_a.size == 0


def test_compute_all_volumes_in_ml():
    mask = np.zeros((10, 10, 10), bool)
    mask[:5, :4, :2] = True   # 40 voxels of 2 x 1 x 0.5 mm = 40 mm^3
    result = metrics.compute_all(mask, mask, (2.0, 1.0, 0.5))
    assert result["pred_volume_ml"] == pytest.approx(0.04)
    assert set(result) == set(metrics.METRIC_KEYS)


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="different shapes"):
        metrics.dice(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))


def _image(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_evaluate_pair_grid_mismatch_names_what_differs():
    array = np.zeros((6, 7, 8), np.uint8)
    array[2:4, 2:5, 2:6] = 1
    pred = _image(array, spacing=(2.0, 2.0, 2.0))
    truth = _image(array, spacing=(0.8, 0.8, 3.0))
    with pytest.raises(InputError) as raised:
        metrics.evaluate_pair(pred, truth, pred_path="pred.nii.gz", gt_path="gt.nii.gz")
    message = str(raised.value)
    assert message.startswith("pred.nii.gz: prediction and ground truth (gt.nii.gz) are on different grids")
    assert "spacing (2, 2, 2) vs (0.8, 0.8, 3)" in message
    assert "origin" not in message and "size" not in message
    shifted = _image(array, origin=(0.0, 5.0, 0.0))
    with pytest.raises(InputError, match=r"origin \(0, 5, 0\) vs \(0, 0, 0\)"):
        metrics.evaluate_pair(shifted, _image(array))
    bigger = _image(np.zeros((6, 7, 9), np.uint8))
    with pytest.raises(InputError, match=r"size \(9, 7, 6\) vs \(8, 7, 6\)"):
        metrics.evaluate_pair(bigger, _image(array))


def test_evaluate_pair_tolerates_float32_rounding_and_maps_labels():
    pred = np.zeros((6, 7, 8), np.uint8)
    pred[2:4, 2:5, 2:6] = 1
    truth = pred * 7   # TotalSegmentator-style value
    result = metrics.evaluate_pair(_image(pred, spacing=(0.8, 0.8, 3.0)),
                                   _image(truth, spacing=(0.8 + 1e-7, 0.8, 3.0), origin=(1e-5, 0.0, 0.0)),
                                   label=1, gt_label=7)
    assert result["dice"] == 1.0 and result["hd95_mm"] == 0.0


def test_label_mask_rejects_non_labelmaps():
    with pytest.raises(InputError, match="non-integer"):
        metrics.label_mask(_image(np.full((2, 2, 2), 0.5, np.float32)), 1, "p.nii.gz")
    with pytest.raises(InputError, match="negative values"):
        metrics.label_mask(_image(np.full((2, 2, 2), -1000, np.int16)), 1, "ct.nii.gz")
    assert metrics.label_mask(_image(np.full((2, 2, 2), 1.0, np.float32)), 1).all()
