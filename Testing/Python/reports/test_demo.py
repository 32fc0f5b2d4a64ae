"""The `demo` command end to end, with a tiny random model standing in for the bundled one."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli.main import main


def test_demo_writes_every_output_and_reports_dice(tiny_model_path, tmp_path, capsys):
    model_path = tiny_model_path
    out = tmp_path / "demo"
    code = main(["demo", "-o", str(out), "--model", str(model_path), "--device", "cpu", "--progress", "none",
                 "--fast"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Dice vs phantom truth:" in captured.out

    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["attention/attention_gate2.nii.gz", "attention/attention_gate3.nii.gz",
                     "attention/attention_gate4.nii.gz", "ct.nii.gz", "figure.png", "pancreas.nii.gz",
                     "pancreas.seg.nrrd", "summary.json", "truth.nii.gz"]
    ct = sitk.ReadImage(str(out / "ct.nii.gz"))
    for name in ("truth.nii.gz", "pancreas.nii.gz", "attention/attention_gate3.nii.gz"):
        other = sitk.ReadImage(str(out / name))
        assert other.GetSize() == ct.GetSize()
        np.testing.assert_allclose(other.GetDirection(), ct.GetDirection(), atol=1e-6)

    # The reported Dice is the Dice of the written files.
    summary = json.loads((out / "summary.json").read_text())
    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "pancreas.nii.gz"))) == 1
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "truth.nii.gz"))) == 1
    assert truth.sum() > 0
    expected = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert summary["dice"] == np.float64(expected).item() or abs(summary["dice"] - expected) < 1e-9

    png = sitk.ReadImage(str(out / "figure.png"))
    assert png.GetSize()[0] > 200 and png.GetSize()[1] > 200
