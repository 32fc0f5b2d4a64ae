"""The simulated user: first click at the deepest point of the truth, then at the deepest point
of the largest error, include for missed, exclude for extra."""

from __future__ import annotations

import numpy as np
import pytest

from AttentionUNetSegmentLib.evaluation.clicks import Click, deepest_point, first_click, largest_error, next_click


def _box(shape, low, high):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(low, high))] = True
    return mask


def test_deepest_point_of_a_box_is_its_centre():
    assert deepest_point(_box((20, 20, 20), (2, 4, 6), (9, 11, 13)), (1, 1, 1)) == (5, 7, 9)


def test_distances_are_in_millimetres():
    # Blob A: 7 x 5 x 5 voxels; blob B: 3 x 9 x 9. With 1 mm voxels A is deeper (2.5 vs 1.5
    # voxels to its border); with 4 mm slices B is (4.5 mm vs 2.5 mm).
    blob_a, blob_b = _box((20, 30, 30), (1, 1, 1), (8, 6, 6)), _box((20, 30, 30), (12, 15, 15), (15, 24, 24))
    assert blob_a[deepest_point(blob_a | blob_b, (1.0, 1.0, 1.0))]
    assert deepest_point(blob_a | blob_b, (4.0, 1.0, 1.0)) == (13, 19, 19)


def test_the_array_edge_counts_as_a_border():
    mask = np.ones((11, 11, 11), bool)
    assert deepest_point(mask, (1, 1, 1)) == (5, 5, 5)


def test_empty_mask_has_no_deepest_point():
    with pytest.raises(ValueError, match="empty"):
        deepest_point(np.zeros((3, 3, 3), bool), (1, 1, 1))


def test_first_click_is_an_include_click_inside_the_truth():
    truth = _box((16, 16, 16), (3, 3, 3), (10, 12, 8))
    click = first_click(truth, (1, 1, 1))
    assert click.include and truth[click.index_zyx]


def test_next_click_corrects_the_largest_error_with_the_right_kind():
    truth = _box((30, 30, 30), (5, 5, 5), (20, 20, 20))
    missed_big = _box((30, 30, 30), (5, 5, 5), (14, 14, 14))             # 9^3 missed in a corner
    prediction = truth & ~missed_big
    prediction |= _box((30, 30, 30), (22, 22, 22), (25, 25, 25))      # 27 voxels extra
    assert next_click(truth, prediction, (1, 1, 1)) == Click((9, 9, 9), True)
    # Now the missed part is found; the extra blob is the largest error: exclude it.
    assert next_click(truth, prediction | missed_big, (1, 1, 1)) == Click((23, 23, 23), False)


def test_no_click_when_nothing_is_wrong():
    truth = _box((8, 8, 8), (2, 2, 2), (6, 6, 6))
    assert next_click(truth, truth.copy(), (1, 1, 1)) is None
    assert largest_error(truth, truth) == (None, True)


def test_components_are_26_connected():
    truth = np.zeros((10, 10, 10), bool)
    prediction = np.zeros_like(truth)
    for i in range(5):   # a diagonal chain touching only at corners: one region of 5 voxels
        prediction[i, i, i] = True
    prediction[8, 0, 0] = prediction[8, 0, 1] = True  # a separate region of 2
    region, missed = largest_error(truth, prediction)
    assert not missed and region.sum() == 5
