"""Context classes: organs a model predicts only so that it tells the pancreas from its
neighbours. The model file lists them apart from its output labels; inference folds them into the
background window by window, so segment writes only the pancreas and its probability is
unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from AttentionUNetSegmentLib.core.errors import ModelFileError
from AttentionUNetSegmentLib.core.labels import LabelInfo
from AttentionUNetSegmentLib.core.modelspec import ModelSpec
from AttentionUNetSegmentLib.core.network import build_network
from AttentionUNetSegmentLib.core.inference import fold_context_logits
from AttentionUNetSegmentLib.core.options import CleanupOptions, MapOptions, SegmentationOptions, WindowOptions
from AttentionUNetSegmentLib.core.pipeline import segment_image
from AttentionUNetSegmentLib.files.modelfile import load_model, save_model, tiny_test_model

LIVER = LabelInfo(2, "Liver", (0.8, 0.4, 0.3))
STOMACH = LabelInfo(3, "Stomach", (0.5, 0.8, 0.4))


def test_folding_sums_the_context_into_background_and_keeps_the_pancreas():
    logits = torch.from_numpy(np.random.default_rng(0).normal(0, 3, size=(2, 4, 5, 6, 7)).astype(np.float32))
    folded = fold_context_logits(logits, context_from=2)                 # (B, 2, z, y, x)
    assert folded.shape == (2, 2, 5, 6, 7)
    before, after = torch.softmax(logits, 1), torch.softmax(folded, 1)
    torch.testing.assert_close(after[:, 1], before[:, 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(after[:, 0], before[:, 0] + before[:, 2] + before[:, 3], atol=1e-6, rtol=0)


def _constant_model(tmp_path, fused_logits):
    """A tiny 4-class network whose output is `fused_logits` at every voxel (its last 1x1x1
    conv zeroed but for the bias), with a spec that outputs the pancreas and keeps two
    context classes."""
    _, base = tiny_test_model()
    args = dict(base.network_args, n_classes=4)
    torch.manual_seed(3)
    model = build_network(base.architecture, **args).eval()
    with torch.no_grad():
        model.fuse.weight.zero_()
        model.fuse.bias.copy_(torch.tensor(fused_logits))
    spec = ModelSpec.from_dict(dict(base.to_dict(), network_args=args,
                                    context_labels=[LIVER.to_dict(), STOMACH.to_dict()]))
    path = tmp_path / "context.pt"
    save_model(path, model, spec)
    return path


def _segment(path):
    model, spec = load_model(path)
    ct = sitk.GetImageFromArray(np.random.default_rng(1).normal(40, 60, (20, 40, 40)).astype(np.int16))
    ct.SetSpacing((2.0, 2.0, 2.0))
    options = SegmentationOptions(WindowOptions(device="cpu", precision="fp32"),
                                  cleanup=CleanupOptions(keep_largest=False, fill_holes=False),
                                  maps=MapOptions(probabilities=True))
    result = segment_image(ct, model, spec, options)
    return spec, sitk.GetArrayFromImage(result.labelmap), sitk.GetArrayFromImage(result.probabilities), result


@pytest.mark.parametrize("fused_logits", [(0.0, 2.0, 1.0, 1.0), (0.0, 1.0, 2.0, -5.0)])
def test_segment_writes_only_the_pancreas_with_its_probability_unchanged(tmp_path, fused_logits):
    spec, labels, probability, result = _segment(_constant_model(tmp_path, fused_logits))
    assert [label.name for label in spec.labels] == ["Pancreas"]
    assert [label.name for label in spec.context_labels] == ["Liver", "Stomach"]
    assert spec.n_network_classes == 4 and set(result.volume_ml()) == {"Pancreas"}
    expected = torch.softmax(torch.tensor(fused_logits), 0)[1].item()   # 0.53, then 0.24
    np.testing.assert_allclose(probability, expected, atol=1e-5)
    # The second model's pancreas beats the background alone (1 > 0) but not background plus
    # context: folded, nothing is pancreas; unfolded, argmax would have written the liver.
    assert set(np.unique(labels)) == ({1} if expected > 0.5 else {0})


def test_older_files_without_context_load_and_a_wrong_class_count_is_one_line(tmp_path):
    _, spec = tiny_test_model()
    data = spec.to_dict()
    del data["context_labels"]                       # a file written before context classes
    assert ModelSpec.from_dict(data).context_labels == []
    model, _ = tiny_test_model()
    wrong = ModelSpec.from_dict(dict(spec.to_dict(), context_labels=[LIVER.to_dict()]))
    save_model(tmp_path / "wrong.pt", model, wrong)
    with pytest.raises(ModelFileError, match="2 network classes but 1 labels \\+ 1 context"):
        load_model(tmp_path / "wrong.pt")
