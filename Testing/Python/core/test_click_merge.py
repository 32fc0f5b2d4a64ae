"""A corrective click changes only what is connected to it (progressive merge)."""

from __future__ import annotations

import numpy as np

from AttentionUNetSegmentLib.core.click_merge import merge_click


def _box(low, high, shape=(20, 20, 20)):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(low, high))] = True
    return mask


def test_an_include_click_adds_only_the_addition_it_touches():
    previous = _box((5, 5, 5), (10, 10, 10))
    proposal = previous | _box((5, 5, 10), (10, 10, 14)) | _box((15, 15, 15), (18, 18, 18))  # + far leak
    merged = merge_click(previous, proposal, (7, 7, 12), True, 2.0)
    assert np.array_equal(merged, previous | _box((5, 5, 10), (10, 10, 14)))


def test_an_exclude_click_removes_only_the_removal_it_touches_and_never_adds():
    previous = _box((5, 5, 5), (10, 10, 15))
    proposal = _box((5, 5, 5), (10, 10, 10)) | _box((0, 0, 0), (3, 3, 3))   # removes the right part, adds a blob
    merged = merge_click(previous, proposal, (7, 7, 12), False, 2.0)
    assert np.array_equal(merged, _box((5, 5, 5), (10, 10, 10)))


def test_a_click_the_network_ignored_still_moves_the_segment():
    previous = _box((5, 5, 5), (10, 10, 10))
    merged = merge_click(previous, previous.copy(), (7, 7, 7), False, 1.0)
    assert merged.sum() == previous.sum() - 7 and not merged[7, 7, 7]
    grown = merge_click(previous, previous.copy(), (15, 15, 15), True, 1.0)
    assert grown.sum() == previous.sum() + 7 and grown[15, 15, 15]
    # A click on what is already as it asks changes nothing.
    assert np.array_equal(merge_click(previous, previous.copy(), (7, 7, 7), True, 2.0), previous)
