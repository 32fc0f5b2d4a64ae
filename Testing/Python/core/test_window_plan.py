"""The sliding-window plan, table-driven (as MONAI's test_sliding_window_inference is): padding,
window starts, the step and the overlap it really gives, over shapes, patches, overlaps and
divisors; and the options a run is built from (core/options.py), each default and check once."""

from __future__ import annotations

import pytest
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.inference import (
    InferenceOptions,
    effective_overlap,
    plan_windows,
    window_starts,
    window_step,
)
from AttentionUNetSegmentLib.core.options import (
    DEFAULT_OVERLAP,
    CleanupOptions,
    MapOptions,
    RegionOptions,
    SegmentationOptions,
    WindowOptions,
)

# patch, overlap asked, divisor -> step, overlap used. The step is patch * (1 - overlap) rounded
# DOWN to a multiple of the divisor (at least one divisor), so the overlap used is >= the one asked.
STEPS = [
    (96, 0.0, 16, 96, 0.0),
    (96, 0.25, 16, 64, 1 / 3),       # 72 -> 64: the quantisation --help warns about
    (96, 0.5, 16, 48, 0.5),
    (96, 0.6, 16, 32, 2 / 3),        # 38.4 -> 32
    (96, 0.75, 16, 16, 5 / 6),       # 24 (23.999... in floating point) -> 16
    (96, 0.95, 16, 16, 5 / 6),       # 4.8 -> at least one divisor
    (64, 0.5, 16, 32, 0.5),
    (64, 0.3, 16, 32, 0.5),          # 44.8 -> 32
    (160, 0.5, 16, 80, 0.5),
    (160, 0.25, 16, 112, 0.3),       # 120 -> 112
    (32, 0.5, 16, 16, 0.5),
    (32, 0.5, 8, 16, 0.5),
    (40, 0.25, 8, 24, 0.4),          # 30 -> 24 with a shallower network's divisor
]


@pytest.mark.parametrize("patch, overlap, divisor, step, used", STEPS)
def test_window_step_and_the_overlap_it_gives(patch, overlap, divisor, step, used):
    assert window_step(patch, overlap, divisor) == step
    assert effective_overlap(patch, overlap, divisor) == pytest.approx(used)
    assert effective_overlap(patch, overlap, divisor) >= overlap - 1e-9 or step == divisor


# shape, patch, overlap, divisor -> padded shape, starts per axis (z, y, x)
PLANS = [
    ((96, 96, 96), (96, 96, 96), 0.5, 16, (96, 96, 96), ([0], [0], [0])),
    ((96, 96, 200), (96, 96, 96), 0.6, 16, (96, 96, 208), ([0], [0], [0, 32, 64, 96, 112])),
    ((96, 96, 200), (96, 96, 96), 0.25, 16, (96, 96, 208), ([0], [0], [0, 64, 112])),
    ((17, 5, 100), (16, 16, 32), 0.5, 16, (32, 16, 112), ([0, 16], [0], [0, 16, 32, 48, 64, 80])),
    ((10, 10, 10), (32, 32, 32), 0.5, 16, (32, 32, 32), ([0], [0], [0])),          # smaller than a patch
    ((64, 130, 130), (64, 96, 96), 0.5, 16, (64, 144, 144), ([0], [0, 48], [0, 48])),
    ((64, 130, 130), (64, 96, 96), 0.0, 16, (64, 144, 144), ([0], [0, 48], [0, 48])),  # last flush
    ((33, 33, 33), (16, 16, 16), 0.5, 16, (48, 48, 48), ([0, 16, 32],) * 3),       # step floor: 16
    ((24, 24, 24), (8, 8, 8), 0.5, 8, (24, 24, 24), ([0, 8, 16],) * 3),
]


@pytest.mark.parametrize("shape, patch, overlap, divisor, padded, per_axis", PLANS)
def test_window_plan(shape, patch, overlap, divisor, padded, per_axis):
    planned, starts = plan_windows(shape, patch, overlap, divisor)
    assert planned == padded
    assert starts == [(z, y, x) for z in per_axis[0] for y in per_axis[1] for x in per_axis[2]]
    for start in starts:   # every window inside the padded volume, every start on the divisor
        assert all(s % divisor == 0 and s + p <= n for s, p, n in zip(start, patch, planned))
    for axis in range(3):  # the windows cover the whole padded volume
        covered = set()
        for s in per_axis[axis]:
            covered.update(range(s, s + patch[axis]))
        assert covered == set(range(planned[axis]))


def test_window_starts_needs_a_padded_axis():
    assert window_starts(112, 32, 16) == [0, 16, 32, 48, 64, 80]
    with pytest.raises(ValueError, match="pad first"):
        window_starts(20, 32, 16)


# --------------------------------------------------------------------------- the options


def test_each_default_is_written_once_and_shared():
    assert WindowOptions().overlap == InferenceOptions((32, 32, 32)).overlap == DEFAULT_OVERLAP
    assert WindowOptions().batch_size == InferenceOptions((32, 32, 32)).batch_size
    options = SegmentationOptions()
    assert options.maps.attention_grid == options.maps.probability_grid == "model"
    assert options.region.point_ras is None and options.cleanup == CleanupOptions()


@pytest.mark.parametrize("make, message", [
    (lambda: WindowOptions(overlap=1.0), "overlap must be in [0, 1), got 1.0"),
    (lambda: WindowOptions(overlap=-0.1), "overlap must be in [0, 1)"),
    (lambda: WindowOptions(batch_size=0), "batch size must be a whole number >= 1, got 0"),
    (lambda: WindowOptions(precision="fp8"), "precision must be one of auto, fp32, bf16, fp16; got 'fp8'"),
    (lambda: MapOptions(probability_grid="coarse"), "the probability grid must be one of model, ct"),
    (lambda: RegionOptions(point_ras=(1.0, 2.0)), "a point is three finite numbers R,A,S"),
    (lambda: RegionOptions(point_ras=(1.0, float("nan"), 2.0)), "a point is three finite numbers"),
    (lambda: RegionOptions(point_ras=(1, 2, 3), roi_size_mm=-5), "the region size must be positive"),
])
def test_invalid_options_are_one_line(make, message):
    with pytest.raises(InputError) as caught:
        make()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_inference_checks_what_the_options_check():
    from AttentionUNetSegmentLib.core.inference import sliding_window_predict
    from AttentionUNetSegmentLib.core.network import AttentionUNet3D

    model = AttentionUNet3D(in_channels=1, n_classes=2, widths=(4, 8, 16, 32, 64))
    with pytest.raises(InputError, match=r"overlap must be in \[0, 1\), got 1.5"):
        sliding_window_predict(model, [[[0.0] * 16] * 16] * 16, InferenceOptions((16, 16, 16), overlap=1.5))
    assert RegionOptions(point_ras=(1, 2, 3)).point_ras == (1.0, 2.0, 3.0)
