"""The region a click-conditioned network runs on: around the clicks and mask, at least a
window, at most the cap, inside the scan; it grows where the object touches its side."""

from __future__ import annotations

import numpy as np
import pytest

from AttentionUNetSegmentLib.core.click_region import box_shape, grown, region_for, touching_sides

SHAPE, WINDOW, CAP = (100, 200, 200), (32, 48, 48), (64, 96, 96)


@pytest.mark.parametrize("point, expected_start", [
    ((2, 3, 4), (0, 0, 0)),             # shifted inside at the low edge
    ((99, 199, 199), (68, 152, 152)),   # ... and at the high edge
])
def test_a_click_near_the_edge_gives_one_window_inside_the_scan(point, expected_start):
    box = region_for(SHAPE, WINDOW, [point], None, margin=4, cap_zyx=CAP)
    assert box_shape(box) == WINDOW
    assert box[0] == expected_start


def test_a_single_click_gives_one_window_centred_on_it():
    box = region_for(SHAPE, WINDOW, [(50, 100, 100)], None, margin=4, cap_zyx=CAP)
    assert box_shape(box) == WINDOW
    centre = [(a + b - 1) / 2 for a, b in zip(*box)]
    assert all(abs(c - p) <= 0.5 for c, p in zip(centre, (50, 100, 100)))


def test_the_region_holds_every_click_and_the_mask_with_its_margin():
    mask = np.zeros(SHAPE, bool)
    mask[40:50, 60:130, 90:100] = True
    box = region_for(SHAPE, WINDOW, [(45, 100, 95)], mask, margin=4, cap_zyx=CAP)
    assert box[0][1] <= 56 and box[1][1] >= 134
    assert box_shape(box)[0] == WINDOW[0]


def test_the_region_never_exceeds_the_cap_nor_the_scan():
    box = region_for((20, 300, 300), WINDOW, [(5, 0, 0), (15, 299, 299)], None, margin=4, cap_zyx=CAP)
    assert box == ((0, 102, 102), (20, 198, 198))


def test_touching_sides_ignore_the_scan_edge():
    mask = np.zeros((10, 10, 10), bool)
    mask[0, 5, 5] = mask[5, 9, 5] = True
    # The box starts at the scan's edge along z: touching it there cannot be helped by growing.
    assert touching_sides(mask, ((0, 5, 5), (10, 15, 15)), (30, 30, 30)) == [(1, 1)]
    assert touching_sides(mask, ((3, 5, 5), (13, 15, 15)), (30, 30, 30)) == [(0, -1), (1, 1)]


def test_growing_stops_at_the_scan_and_the_cap():
    box = ((0, 10, 10), (32, 58, 58))
    assert grown(box, [(1, -1), (2, 1)], (16, 24, 24), SHAPE, CAP) == ((0, 0, 10), (32, 58, 82))
    full = ((0, 0, 0), (64, 96, 96))
    assert grown(full, [(2, 1)], (16, 24, 24), SHAPE, CAP) == full
