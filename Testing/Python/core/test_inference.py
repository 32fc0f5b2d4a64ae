"""Tests for inference.py: stitching exactness at every resolution, padding/cropping, callbacks,
device/precision policy, out-of-memory handling. Tiny models and volumes keep it to seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from AttentionUNetSegmentLib.core.devices import resolve_device, resolve_precision
from AttentionUNetSegmentLib.core.errors import CancelledError, InputError
from AttentionUNetSegmentLib.core.inference import (
    InferenceOptions,
    gaussian_importance,
    plan_windows,
    sliding_window_predict,
)
from AttentionUNetSegmentLib.core.network import AttentionUNet3D, UNet3D

TINY = (4, 8, 16, 32, 64)


def tiny_model(seed: int = 0) -> AttentionUNet3D:
    torch.manual_seed(seed)
    model = AttentionUNet3D(in_channels=1, n_classes=2, widths=TINY)
    # Non-trivial BN statistics so eval mode is not the identity.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


class PointwiseModel(nn.Module):
    """Same interface as AttentionUNet3D, but every output is local: logits are a 1x1x1 conv,
    gate maps are the average-pooled sigmoid of the input over each scale's blocks. Stitching
    must therefore reproduce the whole-volume forward exactly, at every resolution, if and only
    if windows are blended correctly and every coarse map lands on the right coarse voxels."""

    gate_names = ("gate2", "gate3", "gate4")
    gate_scales = {"gate2": 2, "gate3": 4, "gate4": 8}
    divisor = 16

    def __init__(self, n_classes: int = 3):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv3d(1, n_classes, 1)
        self.calls: list[int] = []

    def forward(self, x, return_attention: bool = False):
        self.calls.append(x.shape[0])
        logits = self.conv(x)
        if not return_attention:
            return logits
        maps = {name: F.avg_pool3d(torch.sigmoid(x), s) for name, s in self.gate_scales.items()}
        return logits, maps


def reference(model: nn.Module, volume: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Whole-volume forward on the volume padded (far end, with its minimum) to a multiple of 16."""
    shape = volume.shape
    padded_shape = tuple(math.ceil(n / 16) * 16 for n in shape)
    padded = np.full(padded_shape, volume.min(), dtype=np.float32)
    padded[: shape[0], : shape[1], : shape[2]] = volume
    model.eval()
    with torch.no_grad():
        logits, maps = model(torch.from_numpy(padded)[None, None], return_attention=True)
    z, y, x = shape
    out = {}
    for name, s in model.gate_scales.items():
        cz, cy, cx = (math.ceil(n / s) for n in shape)
        out[name] = maps[name][0, 0, :cz, :cy, :cx].numpy()
    return logits[0, :, :z, :y, :x].numpy(), out


def test_single_window_equals_direct_forward():
    model = tiny_model()
    volume = np.random.default_rng(0).normal(size=(32, 32, 48)).astype(np.float32)
    result = sliding_window_predict(model, volume, InferenceOptions(patch_size_zyx=(32, 32, 48), device="cpu"))
    assert result.windows == 1
    assert result.device == "cpu" and result.precision == "fp32"
    expected_logits, expected_maps = reference(model, volume)
    np.testing.assert_allclose(result.logits, expected_logits, rtol=1e-5, atol=1e-5)
    assert tuple(result.attention) == model.gate_names
    for name in model.gate_names:
        np.testing.assert_allclose(result.attention[name], expected_maps[name], rtol=1e-5, atol=1e-6)


def test_overlapping_windows_shapes_range_and_coverage():
    model = tiny_model()
    volume = np.random.default_rng(1).normal(size=(40, 56, 36)).astype(np.float32)
    options = InferenceOptions(patch_size_zyx=(32, 32, 32), overlap=0.5, batch_size=3, device="cpu")
    result = sliding_window_predict(model, volume, options)
    assert result.logits.shape == (2, 40, 56, 36) and result.logits.dtype == np.float32
    assert np.isfinite(result.logits).all()
    padded, starts = plan_windows(volume.shape, (32, 32, 32), 0.5, 16)
    assert padded == (48, 64, 48) and result.windows == len(starts) == 2 * 3 * 2
    for name, s in model.gate_scales.items():
        values = result.attention[name]
        assert values.shape == tuple(math.ceil(n / s) for n in volume.shape)
        assert values.dtype == np.float32 and np.isfinite(values).all()
        assert values.min() >= 0.0 and values.max() <= 1.0
    # Every padded voxel is inside some window, and every start is a multiple of the divisor.
    covered = np.zeros(padded, dtype=bool)
    for z, y, x in starts:
        assert z % 16 == y % 16 == x % 16 == 0
        covered[z:z + 32, y:y + 32, x:x + 32] = True
    assert covered.all()


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_stitching_is_exact_at_every_resolution(overlap):
    model = PointwiseModel()
    volume = np.random.default_rng(2).normal(size=(48, 80, 64)).astype(np.float32)
    options = InferenceOptions(patch_size_zyx=(32, 48, 32), overlap=overlap, batch_size=4, device="cpu")
    result = sliding_window_predict(model, volume, options)
    assert result.windows > 1 and result.device == "cpu"
    expected_logits, expected_maps = reference(model, volume)
    np.testing.assert_allclose(result.logits, expected_logits, rtol=1e-5, atol=1e-5)
    for name in model.gate_names:
        np.testing.assert_allclose(result.attention[name], expected_maps[name], rtol=1e-5, atol=1e-6)


def test_odd_sizes_smaller_than_patch_pad_and_crop_back():
    model = PointwiseModel()
    volume = np.random.default_rng(3).normal(size=(13, 21, 30)).astype(np.float32)
    result = sliding_window_predict(model, volume, InferenceOptions(patch_size_zyx=(32, 32, 32), device="cpu"))
    assert result.logits.shape == (3, 13, 21, 30)
    assert result.attention["gate2"].shape == (7, 11, 15)
    assert result.attention["gate3"].shape == (4, 6, 8)
    assert result.attention["gate4"].shape == (2, 3, 4)
    expected_logits, expected_maps = reference(model, volume)
    np.testing.assert_allclose(result.logits, expected_logits, rtol=1e-5, atol=1e-5)
    for name in model.gate_names:
        np.testing.assert_allclose(result.attention[name], expected_maps[name], rtol=1e-5, atol=1e-6)
    # And the real network on an odd volume larger than the patch along one axis.
    real = sliding_window_predict(tiny_model(), volume[:, :, :30], InferenceOptions((16, 16, 16), overlap=0.5, device="cpu"))
    assert real.logits.shape == (2, 13, 21, 30) and np.isfinite(real.logits).all()
    assert real.attention["gate4"].shape == (2, 3, 4)


def test_cancel_and_progress():
    volume = np.zeros((16, 16, 64), dtype=np.float32)
    options = InferenceOptions(patch_size_zyx=(16, 16, 16), overlap=0.0, batch_size=1, device="cpu")
    fractions: list[float] = []
    result = sliding_window_predict(PointwiseModel(), volume, options, progress=lambda f, m: fractions.append(f))
    assert result.windows == 4
    assert fractions == [0.25, 0.5, 0.75, 1.0]

    calls = {"n": 0}

    def cancel_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    seen: list[float] = []
    with pytest.raises(CancelledError):
        sliding_window_predict(PointwiseModel(), volume, options, progress=lambda f, m: seen.append(f),
                               cancel=cancel_after_two)
    assert seen == [0.25, 0.5]  # two batches ran, the third was never started


def test_device_and_option_errors():
    volume = np.zeros((16, 16, 16), dtype=np.float32)
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu-9000")
    with pytest.raises(InputError, match="unknown device"):
        sliding_window_predict(PointwiseModel(), volume, InferenceOptions((16, 16, 16), device="gpu"))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="precision"):
        resolve_precision("int8", torch.device("cpu"))
    with pytest.raises(InputError, match="multiples of 16"):
        sliding_window_predict(PointwiseModel(), volume, InferenceOptions((16, 16, 24)))
    with pytest.raises(InputError, match="overlap"):
        sliding_window_predict(PointwiseModel(), volume, InferenceOptions((16, 16, 16), overlap=1.0))
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_out_of_memory_halves_the_batch():
    class OomAboveOne(PointwiseModel):
        def forward(self, x, return_attention=False):
            if x.shape[0] > 1:
                self.calls.append(-x.shape[0])
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(x, return_attention)

    model = OomAboveOne()
    volume = np.random.default_rng(4).normal(size=(16, 16, 48)).astype(np.float32)
    messages: list[str] = []
    result = sliding_window_predict(model, volume, InferenceOptions((16, 16, 16), overlap=0.0, batch_size=4, device="cpu"),
                                    progress=lambda f, m: messages.append(m))
    assert model.calls == [-3, -2, 1, 1, 1]  # 3 windows at once, then 2, then one by one
    assert any("reduced to 2" in m for m in messages) and any("reduced to 1" in m for m in messages)
    expected_logits, _ = reference(PointwiseModel(), volume)
    np.testing.assert_allclose(result.logits, expected_logits, rtol=1e-5, atol=1e-5)


def test_without_attention_and_unet_and_model_state_restored():
    volume = np.random.default_rng(5).normal(size=(16, 32, 16)).astype(np.float32)
    model = tiny_model().train()
    result = sliding_window_predict(model, volume, InferenceOptions((16, 16, 16), return_attention=False, device="cpu"))
    assert result.attention == {} and result.logits.shape == (2, 16, 32, 16)
    assert model.training  # eval() only for the call
    assert all(p.is_contiguous() for p in model.parameters())  # layout restored after channels-last
    torch.manual_seed(0)
    unet = sliding_window_predict(UNet3D(widths=TINY), volume, InferenceOptions((16, 16, 16), device="cpu"))
    assert unet.attention == {} and unet.logits.shape == (2, 16, 32, 16)


def test_gaussian_and_window_plan():
    weight = gaussian_importance((32, 16, 8))
    assert weight.shape == (32, 16, 8) and weight.dtype == torch.float32
    assert math.isclose(float(weight.max()), 1.0, rel_tol=1e-3) and float(weight.min()) >= 1e-3
    assert torch.allclose(weight, weight.flip(0)) and torch.allclose(weight, weight.flip(2))
    # step = patch * (1 - overlap) rounded down to a multiple of 16, at least 16
    _, starts = plan_windows((96, 96, 200), (96, 96, 96), 0.6, 16)
    assert sorted({s[2] for s in starts}) == [0, 32, 64, 96, 112]  # step 38.4 -> 32, last flush
    _, starts = plan_windows((96, 96, 96), (96, 96, 96), 0.95, 16)
    assert len(starts) == 1
    padded, starts = plan_windows((17, 5, 100), (16, 16, 32), 0.5, 16)
    assert padded == (32, 16, 112) and sorted({s[0] for s in starts}) == [0, 16]


def _trained_tiny_model(device: torch.device) -> tuple[nn.Module, np.ndarray]:
    """A tiny network briefly fitted to segment bright blobs, so its logits are decisive like a
    real model's (a random network's logits sit on ties and measure noise, not precision)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*[np.arange(32)] * 3, indexing="ij")

    def sample() -> tuple[np.ndarray, np.ndarray]:
        c = rng.uniform(8, 24, size=3)
        r = rng.uniform(4, 8)
        mask = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < r**2
        image = mask * 2.0 + rng.normal(0, 0.3, size=mask.shape)
        return image.astype(np.float32), mask.astype(np.int64)

    model = AttentionUNet3D(n_classes=2, widths=TINY).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        images, masks = zip(*(sample() for _ in range(4)))
        x = torch.from_numpy(np.stack(images))[:, None].to(device)
        y = torch.from_numpy(np.stack(masks)).to(device)
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    big = np.concatenate([sample()[0] for _ in range(2)], axis=2)  # (32, 32, 64)
    return model.eval(), big


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_amp_agrees_with_fp32():
    device = torch.device("cuda")
    model, volume = _trained_tiny_model(device)
    options = dict(patch_size_zyx=(32, 32, 32), overlap=0.5, batch_size=2, device="cuda")
    fp32 = sliding_window_predict(model, volume, InferenceOptions(**options, precision="fp32"))
    amp = sliding_window_predict(model, volume, InferenceOptions(**options, precision="auto"))
    assert fp32.device.startswith("cuda") and amp.precision in ("bf16", "fp16")
    fg32, fgamp = fp32.logits.argmax(0) == 1, amp.logits.argmax(0) == 1
    assert fg32.sum() > 100  # the model did learn to find the blobs
    assert _dice(fg32, fgamp) >= 0.99
    for name in model.gate_names:
        assert np.abs(fp32.attention[name] - amp.attention[name]).max() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_cuda_stitching_is_exact_at_every_resolution(overlap):
    # Stitching buffers on the GPU (they fit easily): the same exactness as on the CPU, in fp32.
    model = PointwiseModel()
    volume = np.random.default_rng(2).normal(size=(48, 80, 64)).astype(np.float32)
    options = InferenceOptions(patch_size_zyx=(32, 48, 32), overlap=overlap, batch_size=4, device="cuda",
                               precision="fp32")
    result = sliding_window_predict(model, volume, options)
    assert result.device.startswith("cuda") and result.precision == "fp32" and result.windows > 1
    expected_logits, expected_maps = reference(PointwiseModel(), volume)
    np.testing.assert_allclose(result.logits, expected_logits, rtol=1e-4, atol=1e-4)
    for name in model.gate_names:
        np.testing.assert_allclose(result.attention[name], expected_maps[name], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_out_of_memory_fallback_with_a_capped_memory_fraction():
    """A real allocator refusal, not a simulated one: cap this process's share of the GPU just above
    what is already in use, so the windows cannot fit; the run must halve the batch, then finish on
    the CPU, and agree with an uncapped fp32 run."""
    device = torch.device("cuda")
    model, volume = _trained_tiny_model(device)
    volume = np.tile(volume, (2, 2, 1))  # (64, 64, 64)
    options = dict(patch_size_zyx=(64, 64, 64), overlap=0.5, batch_size=4, device="cuda", precision="fp32")
    uncapped = sliding_window_predict(model, volume, InferenceOptions(**options))
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    in_use = torch.cuda.memory_reserved(device)
    messages: list[str] = []
    try:
        torch.cuda.set_per_process_memory_fraction(min(1.0, (in_use + (8 << 20)) / total), device)
        capped = sliding_window_predict(model, volume, InferenceOptions(**options),
                                        progress=lambda f, m: messages.append(m))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    assert any("Out of memory" in m for m in messages), messages
    assert "fallback" in capped.device or any("reduced to" in m for m in messages)
    fg_uncapped, fg_capped = uncapped.logits.argmax(0) == 1, capped.logits.argmax(0) == 1
    assert fg_uncapped.sum() > 100
    assert _dice(fg_uncapped, fg_capped) >= 0.999


def test_batchnorm_folding_keeps_outputs_and_leaves_the_model_alone():
    from AttentionUNetSegmentLib.core.fusion import folded_for_inference

    model = tiny_model(seed=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = folded_for_inference(model)
    assert folded is not model and not folded.training and model.training
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    x = torch.from_numpy(np.random.default_rng(6).normal(size=(2, 1, 32, 32, 32)).astype(np.float32))
    with torch.no_grad():
        expected_logits, expected_maps = model.eval()(x, return_attention=True)
        logits, maps = folded(x, return_attention=True)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-4)
    for name in model.gate_names:
        torch.testing.assert_close(maps[name], expected_maps[name], rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert folded_for_inference(PointwiseModel()).__class__ is PointwiseModel  # nothing to fold: no copy
