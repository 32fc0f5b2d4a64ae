"""The simulated-user protocol on a whole image: scores on the truth's grid, clicks where the
protocol puts them, early stop once nothing is left to correct."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from AttentionUNetSegmentLib.evaluation.interactive import index_to_ras, simulate_user


def _image(array, spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 3.0))
    return image


def test_a_segmenter_that_finds_a_bit_more_with_every_click():
    truth = np.zeros((10, 20, 20), np.uint8)
    truth[2:8, 4:16, 4:16] = 1
    truth_image = _image(truth)
    answers = []

    def segment(point_ras, include):
        answers.append((point_ras, include))
        found = np.zeros_like(truth)
        found[2:8, 4:16, 4:4 + 4 * len(answers)] = 1  # 4 more columns per click
        return _image(found)

    scores = simulate_user(segment, truth_image, clicks=4)
    assert [round(s.dice, 3) for s in scores] == [0.5, 0.8, 1.0, 1.0]
    # Click 1 at the deepest point of the truth: the middle of the box (ties go to raster order).
    first = truth_image.TransformPhysicalPointToIndex([-answers[0][0][0], -answers[0][0][1], answers[0][0][2]])
    # The box is 12 x 12 voxels of 1 mm and 6 slices of 2 mm: every voxel 5 mm from its sides
    # (x, y in 8..11; z 4 or 5) is deepest.
    assert answers[0][1] and 8 <= first[0] <= 11 and 8 <= first[1] <= 11 and first[2] in (4, 5)
    assert len(answers) == 3 and scores[-1].seconds == 0.0  # nothing left to correct after click 3


def test_results_on_another_grid_are_scored_on_the_truths():
    truth = np.zeros((10, 20, 20), np.uint8)
    truth[2:8, 4:16, 4:16] = 1
    truth_image = _image(truth)
    fine = sitk.Resample(truth_image, [40, 40, 40], sitk.Transform(), sitk.sitkNearestNeighbor,
                         truth_image.GetOrigin(), (0.5, 0.5, 0.5), truth_image.GetDirection(), 0)
    scores = simulate_user(lambda p, i: fine, truth_image, clicks=1, with_hd95=True)
    assert scores[0].dice == pytest.approx(1.0) and scores[0].hd95_mm == pytest.approx(0.0)


def test_an_empty_truth_is_refused():
    with pytest.raises(ValueError, match="empty"):
        simulate_user(lambda p, i: None, _image(np.zeros((4, 4, 4))), clicks=1)
