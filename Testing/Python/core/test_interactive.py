"""The interactive session, with stand-in networks whose answer is known: AutoZoom grows the
region until a long object is whole, include clicks choose components, replay equals clicking
one by one, undo, the previous mask reaches the network, and results lie on the CT's grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.interactive import InteractiveSession
from AttentionUNetSegmentLib.core.options import Click, ClickRegionOptions, MapOptions, WindowOptions
from AttentionUNetSegmentLib.core.labels import PANCREAS
from AttentionUNetSegmentLib.core.modelspec import FORMAT_VERSION, ModelSpec
from AttentionUNetSegmentLib.core.preprocessing import IntensitySpec
from AttentionUNetSegmentLib.core.prompts import ClickEncoding


CPU = WindowOptions(device="cpu")


class StandIn(torch.nn.Module):
    """Foreground where the CT channel is bright (`use="ct"`) or where the previous-mask
    channel is set (`use="previous"`); gate maps are the foreground pooled to each scale."""

    divisor = 16
    gate_names = ("gate2", "gate4")
    gate_scales = {"gate2": 2, "gate4": 8}

    def __init__(self, use: str = "ct"):
        super().__init__()
        self.use = use
        self.calls = 0

    def forward(self, x, return_attention=False):
        self.calls += 1
        bright, previous = x[:, 0:1] > 1.0, x[:, 3:4] > 0.5
        foreground = {"ct": bright, "previous": previous, "both": bright | previous}[self.use]
        logit = foreground.float() * 20.0 - 10.0  # (B, 1, z, y, x)
        logits = torch.cat([-logit, logit], dim=1)
        if not return_attention:
            return logits
        maps = {name: F.max_pool3d(foreground.float(), s) for name, s in self.gate_scales.items()}
        return logits, maps


def _spec(window=(16, 32, 32)) -> ModelSpec:
    return ModelSpec(FORMAT_VERSION, "attention_unet3d", {"in_channels": 4, "n_classes": 2}, [PANCREAS],
                     (2.0, 2.0, 2.0), IntensitySpec(), window, {}, "stand-in", prompts=ClickEncoding().to_dict())


def _ct(hu: np.ndarray, spacing=(2.0, 2.0, 2.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)) -> sitk.Image:
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin((100.0, 80.0, -20.0))
    return image


def _ras(image: sitk.Image, index_zyx) -> tuple[float, float, float]:
    x, y, z = image.TransformIndexToPhysicalPoint([int(v) for v in reversed(index_zyx)])
    return -x, -y, z


@pytest.fixture
def bar_ct():
    """A bright bar 180 mm long along x (three windows of 64 mm) in soft tissue."""
    hu = np.full((24, 40, 120), 40, np.int16)
    hu[10:14, 18:22, 15:105] = 300
    return _ct(hu)


def _mask(result) -> np.ndarray:
    return sitk.GetArrayFromImage(result.labelmap) > 0


def test_autozoom_grows_the_region_until_a_long_object_is_whole(bar_ct):
    truth = sitk.GetArrayFromImage(bar_ct) > 200
    grown = InteractiveSession(bar_ct, StandIn(), _spec(), window=CPU, region=ClickRegionOptions(cap_windows=4, max_grow=6))
    found = _mask(grown.add_click(_ras(bar_ct, (12, 20, 20))))
    assert np.array_equal(found, truth)
    fixed = InteractiveSession(bar_ct, StandIn(), _spec(), window=CPU, region=ClickRegionOptions(max_grow=0))
    cut = _mask(fixed.add_click(_ras(bar_ct, (12, 20, 20))))
    assert 0 < cut.sum() < truth.sum() / 2


def test_include_clicks_choose_the_components_kept():
    hu = np.full((24, 40, 40), 40, np.int16)
    hu[4:8, 5:10, 5:10] = hu[16:20, 28:33, 28:33] = 300
    ct = _ct(hu)
    session = InteractiveSession(ct, StandIn(), _spec(), window=CPU)
    first = _mask(session.add_click(_ras(ct, (6, 7, 7))))
    assert first.sum() == 100 and first[6, 7, 7]
    both = _mask(session.add_click(_ras(ct, (18, 30, 30))))
    assert both.sum() == 200


def test_replay_equals_clicking_one_by_one_and_undo_goes_back(bar_ct):
    clicks = [Click(_ras(bar_ct, (12, 20, 30)), True), Click(_ras(bar_ct, (2, 2, 2)), False),
              Click(_ras(bar_ct, (11, 19, 90)), True)]
    one_by_one = InteractiveSession(bar_ct, StandIn(), _spec(), window=CPU)
    results = [_mask(one_by_one.add_click(c.point_ras, c.include)) for c in clicks]
    replayed = InteractiveSession(bar_ct, StandIn(), _spec(), window=CPU)
    assert np.array_equal(_mask(replayed.replay(clicks)), results[-1])
    assert np.array_equal(_mask(one_by_one.undo()), results[1])
    assert len(one_by_one.clicks) == 2


def test_set_clicks_reuses_what_was_answered_and_replays_from_a_moved_click(bar_ct):
    network = StandIn()
    session = InteractiveSession(bar_ct, network, _spec(), window=CPU)
    a, b, c = (Click(_ras(bar_ct, index), True) for index in ((12, 20, 30), (11, 19, 60), (12, 20, 90)))
    session.set_clicks([a, b])
    calls = network.calls
    session.set_clicks([a, b, c])
    assert len(session.history) == 3 and network.calls - calls <= 4   # one click (and its growth)
    moved = Click(_ras(bar_ct, (12, 19, 61)), True)
    fresh = InteractiveSession(bar_ct, StandIn(), _spec(), window=CPU)
    assert np.array_equal(_mask(session.set_clicks([a, moved])), _mask(fresh.replay([a, moved])))
    assert session.clicks == (a, moved)
    assert session.set_clicks([]) is None and session.clicks == ()


def test_a_given_segment_is_refined_not_thrown_away():
    """Exclude-only clicks after start_from_labelmap: the network sees the segment as the
    previous mask (the stand-in returns it), and the result keeps it."""
    hu = np.full((24, 40, 40), 40, np.int16)
    ct = _ct(hu)
    edited = np.zeros(hu.shape, np.uint8)
    edited[8:16, 10:20, 10:20] = 1
    labelmap = sitk.GetImageFromArray(edited)
    labelmap.CopyInformation(ct)
    session = InteractiveSession(ct, StandIn("previous"), _spec(), window=CPU)
    session.start_from_labelmap(labelmap)
    result = _mask(session.add_click(_ras(ct, (2, 30, 30)), include=False))
    assert np.array_equal(result, edited > 0)


def test_an_include_click_after_an_edit_adds_to_the_edited_segment():
    hu = np.full((24, 40, 40), 40, np.int16)
    hu[16:20, 28:33, 28:33] = 300  # a second structure the user now includes
    ct = _ct(hu)
    edited = np.zeros(hu.shape, np.uint8)
    edited[4:10, 5:12, 5:12] = 1
    labelmap = sitk.GetImageFromArray(edited)
    labelmap.CopyInformation(ct)
    session = InteractiveSession(ct, StandIn("both"), _spec(), window=CPU)
    session.start_from_labelmap(labelmap)
    result = _mask(session.add_click(_ras(ct, (18, 30, 30))))
    assert np.array_equal(result, (edited > 0) | (hu > 200))


def test_results_lie_on_the_ct_grid_and_maps_on_their_own_grids(bar_ct):
    session = InteractiveSession(bar_ct, StandIn(), _spec(), window=CPU, maps=MapOptions(probabilities=True))
    result = session.add_click(_ras(bar_ct, (12, 20, 60)))
    for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(result.labelmap, getter)() == getattr(bar_ct, getter)()
    assert set(result.attention) == {"gate2", "gate4"}
    gate2 = result.attention["gate2"]
    assert gate2.GetSpacing() == (4.0, 4.0, 4.0)
    # The gate map is high where the bar is, in physical space.
    centre = bar_ct.TransformIndexToPhysicalPoint((60, 20, 12))
    index = gate2.TransformPhysicalPointToIndex(centre)
    assert gate2[index] == pytest.approx(1.0)
    assert result.probabilities is not None and result.volume_ml()["Pancreas"] > 0


def test_bad_clicks_and_models_say_so_in_one_line(bar_ct):
    session = InteractiveSession(bar_ct, StandIn(), _spec(), window=CPU)
    with pytest.raises(InputError, match="outside the CT"):
        session.add_click((5000.0, 0.0, 0.0))
    with pytest.raises(InputError, match="first click must be an include click"):
        session.add_click(_ras(bar_ct, (12, 20, 20)), include=False)
    automatic = _spec()
    automatic.prompts = {}
    with pytest.raises(InputError, match="no click channels"):
        InteractiveSession(bar_ct, StandIn(), automatic)
