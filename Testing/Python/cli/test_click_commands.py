"""The click commands end to end with tiny models: `evaluate-clicks` (CSV, figure, baselines)
and `train-clicks` (a few steps on a real CT's organs, then --resume)."""

from __future__ import annotations

import csv

import pytest
import SimpleITK as sitk

from AttentionUNetSegmentLib.cli.main import main


def test_evaluate_clicks_writes_every_click_and_both_baselines(tmp_path, real_ct_path, real_labels_path,
                                                              tiny_click_model_path, tiny_model_path):
    out, figure = tmp_path / "clicks.csv", tmp_path / "clicks.png"
    code = main(["evaluate-clicks", str(real_ct_path), str(real_labels_path), "--truth-label", "5", "--clicks", "3",
                 "--model", str(tiny_click_model_path), "--automatic-model", str(tiny_model_path),
                 "--device", "cpu", "-o", str(out), "--figure", str(figure)])
    assert code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["method"] for r in rows] == ["clicks"] * 3 + ["automatic", "cube"]
    assert rows[0]["kind"] == "include" and all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    assert figure.stat().st_size > 10_000


def test_evaluate_clicks_refuses_a_model_without_click_channels(tmp_path, capsys, real_ct_path, real_labels_path,
                                                                tiny_model_path):
    code = main(["evaluate-clicks", str(real_ct_path), str(real_labels_path), "--truth-label", "5",
                 "--model", str(tiny_model_path), "-o", str(tmp_path / "x.csv")])
    assert code == 2 and "no click channels" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_train_clicks_trains_and_resumes(tmp_path, real_ct_path, real_labels_path):
    source = tmp_path / "organs"
    source.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(real_ct_path))[30:90, 20:80, :], str(source / "example_ct.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(real_labels_path))[30:90, 20:80, :], str(source / "example_label.nii.gz"))
    out = tmp_path / "model"
    common = ["train-clicks", "-o", str(out), "--source", f"{source}:1:7", "--steps", "3", "--patch", "32",
              "--window", "32", "--init-from", "none", "--device", "cpu", "--val-every", "100"]
    assert main(common + ["--stop-after", "2"]) == 0
    assert (out / "checkpoint.pt").exists() and (out / "model.pt").exists()
    assert main(common + ["--resume"]) == 0
    from AttentionUNetSegmentLib.files.modelfile import load_model
    _, spec = load_model(out / "model.pt")
    assert spec.interactive and spec.training["steps_done"] == 3
    assert spec.training["sources"][0]["held_out_labels"] == [7]


def test_train_clicks_needs_a_source(tmp_path, capsys):
    assert main(["train-clicks", "-o", str(tmp_path / "m")]) == 2
    assert "--source or --synthetic" in capsys.readouterr().err
