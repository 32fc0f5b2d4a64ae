"""CPU bf16 is used only for models whose file records a measured agreement with fp32."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from AttentionUNetSegmentLib.core.devices import (
    CPU_BF16_KEY,
    cpu_has_native_bf16,
    model_allows_cpu_bf16,
    resolve_precision,
)
from AttentionUNetSegmentLib.core.options import MapOptions, SegmentationOptions, WindowOptions
from AttentionUNetSegmentLib.core.pipeline import segment_image
from AttentionUNetSegmentLib.files.modelfile import tiny_test_model
from AttentionUNetSegmentLib.training.bf16_check import measure_cpu_bf16_agreement

CPU = torch.device("cpu")


def test_auto_precision_on_cpu_follows_the_model_record_and_the_cpu():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", CPU, cpu_bf16_validated=True) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", CPU, cpu_bf16_validated=True) == "fp32"  # an explicit choice wins


def test_threshold_on_the_recorded_agreement():
    assert not model_allows_cpu_bf16({})
    assert not model_allows_cpu_bf16({CPU_BF16_KEY: None})
    assert not model_allows_cpu_bf16({CPU_BF16_KEY: 0.989})
    assert model_allows_cpu_bf16({CPU_BF16_KEY: 0.99})


def test_measured_agreement_is_a_dice():
    model, spec = tiny_test_model(seed=3)
    volume = np.random.default_rng(0).normal(0, 1, (32, 48, 48)).astype(np.float32)
    agreement = measure_cpu_bf16_agreement(model, [volume], spec.patch_size_zyx)
    if not cpu_has_native_bf16():
        assert agreement is None
    else:
        assert 0.0 <= agreement <= 1.0


@pytest.mark.parametrize("recorded, expected_bf16", [(0.995, True), (0.98, False)])
def test_pipeline_uses_the_model_record(recorded, expected_bf16):
    model, spec = tiny_test_model(seed=3)
    spec.training[CPU_BF16_KEY] = recorded
    image = sitk.GetImageFromArray(np.random.default_rng(1).normal(0, 200, (20, 40, 40)).astype(np.float32))
    image.SetSpacing((2.0, 2.0, 2.0))
    result = segment_image(image, model, spec, SegmentationOptions(WindowOptions(device="cpu"), maps=MapOptions(attention=False)))
    expected = "bf16" if expected_bf16 and cpu_has_native_bf16() else "fp32"
    assert result.inference.precision == expected
