"""evaluate --model: which evaluated ground truths a model trained on (leave-one-out proof)."""

from __future__ import annotations

import pytest
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.evaluation.provenance import provenance_lines, seen_in_training, training_files
from AttentionUNetSegmentLib.files.modelfile import save_model, tiny_test_model
from test_evaluate import _parse, decathlon  # noqa: F401 - the fixture


def _summary(*label_files) -> dict:
    return {"trained_on": [{"dataset": "real", "case_ids": [f"c{i}" for i in range(len(label_files))],
                            "image_files": [], "label_files": [str(p.resolve()) for p in label_files]}]}


def test_seen_through_links_and_unknown_without_files(tmp_path):
    real = tmp_path / "organs.nii.gz"
    real.write_bytes(b"x")
    link_dir = tmp_path / "real" / "s0009"
    link_dir.mkdir(parents=True)
    (link_dir / "s0009_label.nii.gz").symlink_to(real)          # what recipe.sh trains on
    other = tmp_path / "pancreas.nii.gz"
    other.write_bytes(b"y")
    summary = _summary(link_dir / "s0009_label.nii.gz")
    assert seen_in_training(real, summary) is True                # the file behind the link
    assert seen_in_training(other, summary) is False
    assert seen_in_training(real, {"train_cases": 40}) is None    # an older model file
    assert training_files({"trained_on": [{"case_ids": ["a"]}]}) is None
    assert provenance_lines([("s0009", real), ("nih", other)], summary, "m.pt") == [
        "1 of the 2 evaluated case(s) were in m.pt's training data (not a held-out result): s0009"]
    assert provenance_lines([("nih", other)], summary, "m.pt") == [
        "none of the 1 evaluated case(s) is among the 1 case(s) m.pt trained on: all unseen"]


def test_cli_says_which_cases_the_model_saw(decathlon, tmp_path, capsys):
    pred, root = decathlon
    model, spec = tiny_test_model()
    spec.training = _summary(root / "labelsTr" / "pancreas_004.nii.gz")
    save_model(tmp_path / "model.pt", model, spec)
    args = _parse(["evaluate", str(pred), str(root), "--model", str(tmp_path / "model.pt")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "1 of the 3 evaluated case(s) were in model.pt's training data" in out
    assert out.rstrip().endswith("pancreas_004")
    args = _parse(["evaluate", str(pred), str(root), "--model", str(tmp_path / "missing.pt")])
    with pytest.raises(InputError):
        args.func(args)
    assert capsys.readouterr().out == ""                          # refused before any output
