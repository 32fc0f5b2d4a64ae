"""Tests for network.py: the official layout (parameter counts), shapes, gates, errors.

Tiny widths and small inputs keep the whole file to a few seconds on two CPU cores; only the
parameter counts build full-size networks (no forward pass there).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from AttentionUNetSegmentLib.core.network import (
    AttentionUNet3D,
    GridAttentionGate3D,
    UNet3D,
    build_network,
    count_parameters,
)

TINY = (4, 8, 16, 32, 64)

# Computed by hand from the layer definitions of the official ozan-oktay/Attention-Gated-Networks
# models (feature_scale=4 -> widths 16..256, in_channels=1, n_classes=4):
#   unet_CT_dsv_3D: encoder 5 x UnetConv3 + decoder 4 x UnetUp3_CT + dsv1..4 + final 1x1x1
#   = 5,888,004 (the paper's "5.88 M").
#   unet_CT_single_att_dsv_3D adds gating (1x1x1 conv-BN 256->256: 66,304) and three
#   MultiAttentionBlocks (grid block W + theta + phi + psi: 237,667; combine_gates: 22,176)
#   = 6,214,151 ("about 6.21 M"). The paper reports 6.40 M, which neither official variant
#   reproduces exactly (the two-gates-per-level unet_CT_multi_att_dsv_3D gives 6,473,322).
OFFICIAL_UNET_DSV = 5_888_004
OFFICIAL_SINGLE_ATT_DSV = 6_214_151


def tiny_attention(**kwargs) -> AttentionUNet3D:
    torch.manual_seed(0)
    return AttentionUNet3D(in_channels=1, n_classes=3, widths=TINY, **kwargs)


def test_parameter_counts_match_the_official_models():
    attention = AttentionUNet3D(in_channels=1, n_classes=4)
    unet = UNet3D(in_channels=1, n_classes=4)
    assert count_parameters(unet) == OFFICIAL_UNET_DSV
    assert count_parameters(attention) == OFFICIAL_SINGLE_ATT_DSV
    assert abs(count_parameters(attention) - 6.21e6) / 6.21e6 < 0.01


def test_build_network_dispatches_and_rejects_unknown():
    assert type(build_network("attention_unet3d", widths=TINY)) is AttentionUNet3D
    assert type(build_network("unet3d", widths=TINY, n_classes=2)) is UNet3D
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("vnet")


def test_output_and_attention_shapes_and_range():
    model = tiny_attention().eval()
    x = torch.randn(2, 1, 16, 32, 48)
    with torch.no_grad():
        logits = model(x)
        logits2, attention = model(x, return_attention=True)
    assert logits.shape == (2, 3, 16, 32, 48)
    assert torch.equal(logits, logits2)
    assert model.gate_names == ("gate2", "gate3", "gate4")
    assert model.gate_scales == {"gate2": 2, "gate3": 4, "gate4": 8}
    assert model.divisor == 16
    assert tuple(attention) == model.gate_names
    for name, alpha in attention.items():
        s = model.gate_scales[name]
        assert alpha.shape == (2, 1, 16 // s, 32 // s, 48 // s)
        assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
        assert torch.isfinite(alpha).all()


def test_gradients_reach_every_gate_parameter():
    model = tiny_attention().train()
    x = torch.randn(2, 1, 16, 16, 16)
    logits = model(x)
    logits.square().mean().backward()
    for name in model.gate_names:
        for pname, p in model.gates[name].named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    for p in model.gating.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_unet_has_no_gates():
    torch.manual_seed(0)
    model = UNet3D(n_classes=2, widths=TINY).eval()
    assert model.gate_names == ()
    assert model.gate_scales == {}
    assert model.gating is None
    assert len(model.gates) == 0
    assert not any(isinstance(m, GridAttentionGate3D) for m in model.modules())
    with torch.no_grad():
        logits, attention = model(torch.randn(1, 1, 16, 16, 16), return_attention=True)
    assert logits.shape == (1, 2, 16, 16, 16) and attention == {}
    with pytest.raises(ValueError, match="no attention gates"):
        UNet3D(widths=TINY, gated_levels=(2,))


def test_perturbing_a_gate_changes_output_and_its_map():
    model = tiny_attention().eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        before, att_before = model(x, return_attention=True)
        # A large negative psi bias drives that gate's alpha towards 0: it shuts the skip.
        model.gates["gate3"].psi.bias.fill_(-30.0)
        after, att_after = model(x, return_attention=True)
    assert float(att_after["gate3"].max()) < 1e-6
    assert not torch.allclose(att_before["gate3"], att_after["gate3"])
    assert torch.equal(att_before["gate4"], att_after["gate4"])  # computed before gate3
    assert (before - after).abs().max() > 1e-4


def test_gate_alone_shapes():
    gate = GridAttentionGate3D(in_channels=8, gating_channels=16)
    x = torch.randn(2, 8, 8, 12, 16)
    g = torch.randn(2, 16, 4, 6, 8)
    y, alpha = gate(x, g)
    assert y.shape == x.shape
    assert alpha.shape == (2, 1, 8, 12, 16)


def test_subset_of_gates_and_no_deep_supervision():
    model = tiny_attention(gated_levels=(2,), deep_supervision=False).eval()
    assert model.gate_names == ("gate2",) and model.gating is None
    with torch.no_grad():
        logits, attention = model(torch.randn(1, 1, 16, 16, 16), return_attention=True)
    assert logits.shape == (1, 3, 16, 16, 16)
    assert set(attention) == {"gate2"}
    with pytest.raises(ValueError, match="gated_levels"):
        AttentionUNet3D(widths=TINY, gated_levels=(1, 2))  # full resolution is never gated


def test_fewer_levels_change_divisor():
    model = AttentionUNet3D(widths=(4, 8, 16), gated_levels=(2,)).eval()
    assert model.divisor == 4 and model.gate_scales == {"gate2": 2}
    with torch.no_grad():
        assert model(torch.randn(1, 1, 4, 8, 12)).shape == (1, 2, 4, 8, 12)


@pytest.mark.parametrize("shape", [(1, 1, 16, 16, 20), (1, 1, 8, 16, 16), (1, 1, 16, 16), (1, 2, 16, 16, 16)])
def test_bad_input_raises_clear_value_error(shape):
    model = tiny_attention()
    with pytest.raises(ValueError, match=r"multiple of 16|\(B, C, z, y, x\)|input channel"):
        model(torch.randn(*shape))


def test_kaiming_initialisation():
    torch.manual_seed(0)
    model = AttentionUNet3D(widths=(16, 32, 64, 128, 256))
    conv = model.encoder[3].block[0]  # 64 -> 128 channels, fan_in = 64 * 27
    expected_std = (2.0 / (64 * 27)) ** 0.5
    assert abs(float(conv.weight.detach().std()) / expected_std - 1) < 0.05
    bn = model.encoder[3].block[1]
    assert isinstance(bn, nn.BatchNorm3d) and float(bn.bias.detach().abs().max()) == 0.0
