"""Domain randomisation: bounded to the normalised HU window, label untouched, deterministic per
seed, off unless asked for, and never reachable from inference."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from AttentionUNetSegmentLib.core.preprocessing import IntensitySpec
from AttentionUNetSegmentLib.training.config import TrainConfig
from AttentionUNetSegmentLib.training.randomisation import (
    DomainRandomisationConfig,
    contrast_curve,
    gaussian_blur,
    lower_z_resolution,
    normalised_window,
    randomise_domain,
    shift_classes,
)

WINDOW = normalised_window(IntensitySpec())          # (-2.0, 2.0) for -160..240 HU
ALWAYS = DomainRandomisationConfig(enabled=True, class_shift_probability=1.0,
                                   curve_probability=1.0, bias_probability=1.0,
                                   low_resolution_probability=1.0, blur_probability=1.0,
                                   noise_probability=1.0)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """image (2, 1, 16, 24, 24) spanning the whole window (air included), label with 2 classes."""
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand(2, 1, 16, 24, 24, generator=g) * 4 - 2).clamp(*WINDOW)
    image[:, :, :, :4] = WINDOW[0]                                # a slab of air
    label = torch.zeros(2, 16, 24, 24, dtype=torch.long)
    label[:, 4:12, 8:16, 8:16] = 1
    label[:, 6:10, 10:14, 10:14] = 2
    return image, label


def _randomise(config, seed: int, image=None, label=None):
    if image is None:
        image, label = _batch()
    generator = torch.Generator().manual_seed(seed)
    return randomise_domain(image, label, config, generator, WINDOW), image, label


def test_window_of_the_default_intensity_spec():
    assert WINDOW == pytest.approx((-2.0, 2.0))


def test_output_stays_in_the_window_and_labels_are_untouched():
    for seed in range(5):
        out, image, label = _randomise(ALWAYS, seed)
        before = label.clone()
        assert out.shape == image.shape and out.dtype == image.dtype
        assert out.min() >= WINDOW[0] and out.max() <= WINDOW[1]
        assert torch.isfinite(out).all()
        assert torch.equal(label, before)
        assert (out - image).abs().mean() > 0.05        # it does change the patch


def test_deterministic_per_seed_and_different_between_seeds():
    a, _, _ = _randomise(ALWAYS, 7)
    b, _, _ = _randomise(ALWAYS, 7)
    c, _, _ = _randomise(ALWAYS, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_off_by_default_and_off_returns_the_input_itself():
    assert TrainConfig().randomisation.enabled is False
    out, image, _ = _randomise(DomainRandomisationConfig(), 0)
    assert out is image
    # A config from a checkpoint written before randomisation existed stays off on --resume.
    old = TrainConfig().to_dict()
    del old["randomisation"]
    assert TrainConfig.from_dict(old).randomisation.enabled is False
    assert TrainConfig.from_dict(TrainConfig(randomisation=ALWAYS).to_dict()).randomisation == ALWAYS


def test_each_step_does_what_it_says():
    image, label = _batch()
    patch, lab = image[0], label[0]
    g = torch.Generator().manual_seed(3)
    shifted = shift_classes(patch, lab, 0.8, g)
    changed = (shifted != patch)[0]
    assert not changed[lab == 0].any() and changed[lab > 0].all()
    assert (shifted - patch)[0][lab > 0].abs().max() <= 0.8 + 1e-6

    ramp = torch.linspace(*WINDOW, 101).view(1, 1, 1, 101)
    curved = contrast_curve(ramp, *WINDOW, 6, 0.4, torch.Generator().manual_seed(1))
    assert (curved.diff(dim=-1) >= -1e-6).all()                 # monotone: order kept
    assert not torch.allclose(curved, ramp)

    constant = torch.full((1, 12, 8, 8), 0.5)
    assert torch.allclose(lower_z_resolution(constant, 3.0), constant)
    assert torch.allclose(gaussian_blur(constant, (1.0, 1.0, 1.0)), constant)
    stripes = torch.zeros(1, 12, 8, 8)
    stripes[:, ::2] = 1.0                                       # 1-voxel slices alternate
    assert lower_z_resolution(stripes, 2.0).std() < 0.5 * stripes.std()
    assert lower_z_resolution(stripes, 1.0).equal(stripes)      # factor 1: nothing to do


def test_bad_settings_are_refused_in_one_line():
    from AttentionUNetSegmentLib.core.errors import InputError
    config = TrainConfig(randomisation=replace(ALWAYS, noise_probability=1.5))
    with pytest.raises(InputError, match="domain randomisation: noise_probability"):
        config.validate()


def test_inference_never_loads_the_training_package():
    # The randomisation cannot run at inference: segment's whole code path (the command and the
    # core pipeline) does not even import the training package.
    code = ("import sys, AttentionUNetSegmentLib.cli.segment, AttentionUNetSegmentLib.core.pipeline\n"
            "print(sorted(m for m in sys.modules if '.training' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
