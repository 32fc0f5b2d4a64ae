"""postprocessing.py: largest component, 3D hole filling, component at/nearest a point.

Arrays are (z, y, x). Foreground is 26-connected, background 6-connected.
"""

from __future__ import annotations

import numpy as np
import pytest
from AttentionUNetSegmentLib.core.postprocessing import (
    component_at_point,
    fill_holes,
    largest_component,
    postprocess_labelmap,
)


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return d2 <= radius**2


# --------------------------------------------------------------------------- largest component


def test_largest_component_keeps_the_biggest_object() -> None:
    mask = ball((30, 30, 30), (10, 10, 10), 6) | ball((30, 30, 30), (23, 23, 23), 3)
    mask[0, 0, 29] = True
    out = largest_component(mask.astype(np.uint8))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, ball((30, 30, 30), (10, 10, 10), 6))


def test_largest_component_is_26_connected() -> None:
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[3, 3, 3] = True  # touching only at corners
    mask[0, 4, 4] = mask[0, 4, 3] = True  # separate, two voxels
    out = largest_component(mask)
    assert out.sum() == 3 and out[2, 2, 2]


def test_largest_component_empty_and_single() -> None:
    assert not largest_component(np.zeros((4, 4, 4), bool)).any()
    single = ball((9, 9, 9), (4, 4, 4), 3)
    np.testing.assert_array_equal(largest_component(single), single)


# --------------------------------------------------------------------------- fill_holes


def test_fill_holes_makes_a_hollow_sphere_solid() -> None:
    solid = ball((25, 25, 25), (12, 12, 12), 9)
    hollow = solid & ~ball((25, 25, 25), (12, 12, 12), 6)
    out = fill_holes(hollow)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, solid)


def test_fill_holes_fills_a_cavity_enclosed_only_through_corners() -> None:
    """A 26- but not 6-connected shell still encloses its cavity (background is 6-connected)."""
    mask = np.zeros((7, 7, 7), dtype=bool)
    mask[2:5, 2:5, 2:5] = True
    mask[3, 3, 3] = False  # the hole
    mask[2, 2, 2] = False  # knock out a corner: the hole still only touches it via an edge/corner
    out = fill_holes(mask)
    assert out[3, 3, 3] and not out[2, 2, 2]


def test_fill_holes_leaves_a_cup_open_to_the_border() -> None:
    shape = (30, 30, 30)
    shell = ball(shape, (15, 15, 15), 10) & ~ball(shape, (15, 15, 15), 7)
    cup = shell.copy()
    cup[:15] = False  # cut the top off: the cavity opens upward into the outer background
    np.testing.assert_array_equal(fill_holes(cup), cup)

    # A tube through the whole volume: its lumen reaches the border at both ends.
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    r2 = (yy - 15) ** 2 + (xx - 15) ** 2
    tube = (r2 <= 8**2) & (r2 >= 5**2)
    np.testing.assert_array_equal(fill_holes(tube), tube)
    # Capping one end keeps it open (the other end touches the border) ...
    capped = tube | ((zz == 0) & (r2 <= 8**2))
    np.testing.assert_array_equal(fill_holes(capped), capped)
    # ... capping both ends inside the volume closes it.
    closed = tube & (zz >= 2) & (zz <= 27)
    closed |= ((zz == 2) | (zz == 27)) & (r2 <= 8**2)
    filled = fill_holes(closed)
    assert filled[15, 15, 15] and filled[3:27][(r2 <= 8**2)[3:27]].all()
    assert not filled[0, 15, 15]


def test_fill_holes_no_background() -> None:
    full = np.ones((3, 3, 3), bool)
    np.testing.assert_array_equal(fill_holes(full), full)


# --------------------------------------------------------------------------- component_at_point


def two_balls() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (20, 40, 40)
    a = ball(shape, (10, 10, 10), 4)  # two equal balls: "largest" cannot choose, the point must
    b = ball(shape, (10, 10, 30), 4)
    return a | b, a, b


def test_component_at_point_containing() -> None:
    mask, a, b = two_balls()
    np.testing.assert_array_equal(component_at_point(mask, (10, 10, 31)), b)
    # A fractional index is rounded to the voxel that contains it.
    np.testing.assert_array_equal(component_at_point(mask, (10.4, 9.6, 10.2)), a)


def test_component_at_point_nearest() -> None:
    mask, a, b = two_balls()
    # Background point between them, closer to b along x.
    np.testing.assert_array_equal(component_at_point(mask, (10, 10, 22)), b)
    np.testing.assert_array_equal(component_at_point(mask, (10, 10, 17)), a)
    # A point outside the array still picks the nearest component.
    np.testing.assert_array_equal(component_at_point(mask, (10, 10, -5)), a)


def test_component_at_point_uses_mm_when_spacing_given() -> None:
    """Index distance and mm distance disagree on anisotropic grids; spacing decides."""
    shape = (30, 30, 30)
    near_in_z = ball(shape, (20, 5, 5), 1)  # 10 voxels away along z
    near_in_x = ball(shape, (10, 5, 17), 1)  # 12 voxels away along x
    mask = near_in_z | near_in_x
    point = (10, 5, 5)
    np.testing.assert_array_equal(component_at_point(mask, point), near_in_z)
    # With 5 mm slices and 0.7 mm pixels, the x neighbour is much closer physically.
    in_mm = component_at_point(mask, point, spacing_zyx=(5.0, 0.7, 0.7))
    np.testing.assert_array_equal(in_mm, near_in_x)


def test_component_at_point_empty_and_bad_input() -> None:
    assert not component_at_point(np.zeros((4, 4, 4), bool), (1, 1, 1)).any()
    with pytest.raises(ValueError):
        component_at_point(np.ones((4, 4, 4), bool), (1, 1))
    with pytest.raises(ValueError):
        component_at_point(np.ones((4, 4, 4), bool), (1, 1, 1), spacing_zyx=(1, 0, 1))


# --------------------------------------------------------------------------- labelmaps


def test_postprocess_labelmap_multi_label() -> None:
    shape = (30, 30, 30)
    big1 = ball(shape, (10, 10, 10), 6)
    hollow1 = big1 & ~ball(shape, (10, 10, 10), 2)
    speck1 = ball(shape, (25, 25, 25), 1)
    big2 = ball(shape, (10, 22, 22), 5)
    speck2 = np.zeros(shape, bool)
    speck2[28, 2, 2] = True
    labelmap = np.zeros(shape, np.uint8)
    labelmap[hollow1 | speck1] = 1
    labelmap[big2 | speck2] = 2

    out = postprocess_labelmap(labelmap)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out == 1, big1)
    np.testing.assert_array_equal(out == 2, big2)

    untouched = postprocess_labelmap(labelmap, keep_largest=False, fill=False)
    np.testing.assert_array_equal(untouched, labelmap)

    # A click near the speck of label 1 keeps the speck (component at point), not the big ball;
    # label 2 keeps its component nearest the click.
    clicked = postprocess_labelmap(labelmap, point_index_zyx=(25, 25, 24), fill=False)
    np.testing.assert_array_equal(clicked == 1, speck1)
    np.testing.assert_array_equal(clicked == 2, big2)


def test_fill_never_overwrites_another_label() -> None:
    shape = (21, 21, 21)
    shell = ball(shape, (10, 10, 10), 8) & ~ball(shape, (10, 10, 10), 5)
    core = ball(shape, (10, 10, 10), 2)
    labelmap = np.zeros(shape, np.int16)
    labelmap[shell] = 1
    labelmap[core] = 3  # label 3 sits inside label 1's cavity
    out = postprocess_labelmap(labelmap)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out == 3, core)
    np.testing.assert_array_equal(out == 1, ball(shape, (10, 10, 10), 8) & ~core)
