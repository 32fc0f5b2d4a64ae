"""Training the click-conditioned model: the simulated user's clicks, the warm start, and a
few real optimisation steps on a real CT's organ labels end to end (resume included)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from AttentionUNetSegmentLib.core.prompts import ClickEncoding
from AttentionUNetSegmentLib.training.click_simulation import ClickPolicy, damaged, first_clicks, simulate
from AttentionUNetSegmentLib.training.interactive import (
    InteractiveTrainConfig,
    build_interactive_network,
    protocol_validator,
    train_interactive,
)
from AttentionUNetSegmentLib.training.interactive_data import StructureSource, crop


def _target(shape=(24, 24, 24)):
    mask = np.zeros(shape, bool)
    mask[6:18, 8:16, 5:20] = True
    return mask


def test_first_clicks_lie_inside_and_excludes_outside_the_target():
    target = _target()
    rng = np.random.default_rng(0)
    policy = ClickPolicy(extra_include=1.0, extra_exclude=1.0)
    for _ in range(20):
        state = first_clicks(target, (2, 2, 2), policy, rng)
        assert 2 <= len(state.include) <= 3 and all(target[c] for c in state.include)
        assert all(not target[c] for c in state.exclude)


def test_damaged_masks_differ_from_the_truth_but_overlap_it():
    target = _target()
    rng = np.random.default_rng(1)
    for _ in range(10):
        mask = damaged(target, rng)
        overlap = (mask & target).sum() / target.sum()
        assert 0.3 < overlap and not np.array_equal(mask, target)


def test_simulated_rounds_feed_the_model_its_own_cleaned_prediction_and_a_corrective_click():
    target = _target()
    images = [np.zeros(target.shape, np.float32)]
    seen = []

    def predict(inputs):  # a "model" that always misses the target's far half
        seen.append(inputs.copy())
        half = target.copy()
        half[:, :, 12:] = False
        return half[None]

    policy = ClickPolicy(deepest_first=1.0, extra_include=0.0, extra_exclude=0.0, round_weights=(0, 0, 1),
                         synthetic_previous=0.0, silent_round=0.0)
    inputs, rounds = simulate(images, [target], predict, ClickEncoding(), (2, 2, 2), policy, np.random.default_rng(0))
    assert rounds == 2 and len(seen) == 2
    assert seen[0][0, 3].sum() == 0  # no previous mask before the first prediction
    previous = inputs[0, 3] > 0
    # The prediction is the previous mask; the second round's include click, which the model
    # ignored, added its ball there (core.click_merge), so the mask grew into the missed half.
    assert np.array_equal(previous[:, :, :12], target[:, :, :12])
    assert 0 < previous[:, :, 12:].sum() <= 33
    include = inputs[0, 1] > 0
    assert include[:, :, 12:].any()


def test_crop_pads_outside_the_array():
    array = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    out = crop(array, (-1, 1, 1), (3, 3, 3), -5.0)
    assert out[0].max() == -5.0 and out[1, 0, 0] == array[0, 1, 1] and out[1, 2, 2] == -5.0


def test_warm_start_copies_ct_filters_and_starts_clicks_at_zero(tiny_model_path):
    config = InteractiveTrainConfig(widths=(4, 8, 16, 32, 64), init_from=str(tiny_model_path))
    network = build_interactive_network(config)
    from AttentionUNetSegmentLib.files.modelfile import load_model
    source, _ = load_model(tiny_model_path)
    first = next(name for name, p in network.named_parameters() if p.dim() == 5)
    mine, theirs = dict(network.named_parameters())[first], dict(source.named_parameters())[first]
    assert torch.equal(mine[:, :1], theirs) and mine[:, 1:].abs().sum() == 0
    deep = "encoder.4.block.0.weight"
    assert torch.equal(dict(network.named_parameters())[deep], dict(source.named_parameters())[deep])


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory, real_ct_path, real_labels_path):
    """The TotalSegmentator example's organs (pancreas held out), cropped small."""
    # The shared data comes through conftest's fixtures: `from conftest import ...` would find
    # whichever conftest.py pytest imported first under that name (scene/ has one too).
    folder = tmp_path_factory.mktemp("organs")
    ct = sitk.ReadImage(str(real_ct_path))[30:90, 20:80, :]
    labels = sitk.ReadImage(str(real_labels_path))[30:90, 20:80, :]
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    sitk.WriteImage(labels, str(folder / "labels.nii.gz"))
    return StructureSource.from_pairs("example", [(folder / "ct.nii.gz", folder / "labels.nii.gz")],
                                      held_out=frozenset({7})), ct, labels


def test_a_few_steps_train_save_validate_and_resume(tiny_source, tmp_path):
    source, ct, labels = tiny_source
    config = InteractiveTrainConfig(patch_size_zyx=(32, 32, 32), window_zyx=(32, 32, 32), widths=(4, 8, 16, 32, 64),
                                    steps=4, checkpoint_every=2, val_every=4, val_clicks=2)
    truth = sitk.Cast(labels == 5, sitk.sitkUInt8)  # the liver, as a validation target
    validate = protocol_validator([(ct, truth)], clicks=2, report_clicks=(1, 2))
    lines = []
    state = train_interactive(config, [source], tmp_path, validate=validate, report=lines.append, stop_after=2)
    assert state.step == 2 and (tmp_path / "checkpoint.pt").exists() and (tmp_path / "model.pt").exists()
    state = train_interactive(config, [source], tmp_path, validate=validate, report=lines.append, resume=True)
    assert state.step == 4
    assert any(line.startswith("validation at step 4: dice@1") for line in lines)
    from AttentionUNetSegmentLib.files.modelfile import load_model
    model, spec = load_model(tmp_path / "best.pt")
    assert spec.interactive and spec.network_args["in_channels"] == 4
    assert spec.training["sources"][0]["held_out_labels"] == [7]
