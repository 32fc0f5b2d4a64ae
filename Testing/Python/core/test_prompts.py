"""Click channels: balls and Gaussians drawn where the clicks are, combined with max."""

from __future__ import annotations

import numpy as np
import pytest

from AttentionUNetSegmentLib.core.prompts import PROMPT_CHANNELS, ClickEncoding, draw_clicks, network_input


def test_ball_is_one_inside_its_radius_and_zero_outside():
    channel = np.zeros((9, 9, 9), np.float32)
    draw_clicks(channel, [(4, 4, 4)], ClickEncoding("ball", 2.0))
    z, y, x = np.ogrid[:9, :9, :9]
    inside = (z - 4) ** 2 + (y - 4) ** 2 + (x - 4) ** 2 <= 4
    assert np.array_equal(channel == 1.0, inside)
    assert channel[~inside].max() == 0.0


def test_gaussian_peaks_at_the_click_and_falls_with_distance():
    channel = np.zeros((11, 11, 11), np.float32)
    draw_clicks(channel, [(5, 5, 5)], ClickEncoding("gaussian", 3.0))
    assert channel[5, 5, 5] == pytest.approx(1.0)
    assert 0 < channel[5, 5, 7] < channel[5, 5, 6] < 1.0
    assert channel[5, 5, 9] == 0.0  # beyond the radius


def test_overlapping_clicks_never_exceed_one_and_partial_balls_are_drawn_at_the_edge():
    channel = np.zeros((6, 6, 6), np.float32)
    draw_clicks(channel, [(0, 0, 0), (0, 0, 1), (-10, 0, 0)], ClickEncoding("ball", 2.0))
    assert channel.max() == 1.0
    assert channel[0, 0, 0] == 1.0 and channel[2, 0, 0] == 1.0 and channel[5, 5, 5] == 0.0


def test_network_input_orders_the_channels_and_checks_the_mask():
    image = np.full((8, 8, 8), 0.5, np.float32)
    previous = np.zeros((8, 8, 8), bool)
    previous[2:4, 2:4, 2:4] = True
    x = network_input(image, [(1, 1, 1)], [(6, 6, 6)], previous, ClickEncoding())
    assert x.shape == (len(PROMPT_CHANNELS), 8, 8, 8) and x.dtype == np.float32
    assert np.all(x[0] == 0.5)
    assert x[1, 1, 1, 1] == 1.0 and x[1, 6, 6, 6] == 0.0
    assert x[2, 6, 6, 6] == 1.0 and x[2, 1, 1, 1] == 0.0
    assert x[3].sum() == 8
    with pytest.raises(ValueError, match="previous mask"):
        network_input(image, [], [], np.zeros((4, 4, 4), bool), ClickEncoding())


def test_encoding_round_trips_and_rejects_what_it_cannot_read():
    encoding = ClickEncoding("gaussian", 3.0)
    assert ClickEncoding.from_dict(encoding.to_dict()) == encoding
    with pytest.raises(ValueError, match="unknown prompt channels"):
        ClickEncoding.from_dict({"channels": ["image", "include"], "kind": "ball"})
    with pytest.raises(ValueError):
        ClickEncoding("disk", 2.0)
    with pytest.raises(ValueError):
        ClickEncoding("ball", 0.0)
