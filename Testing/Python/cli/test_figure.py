"""`attention-unet-segment figure`: segment's files drawn where they lie, on the real CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli.main import main

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def segmented(real_ct_path, tiny_model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("segmented")
    assert main(["segment", str(real_ct_path), "-o", str(out / "seg.nii.gz"), "--model", str(tiny_model_path),
                 "--attention-dir", str(out / "attention"), "--progress", "none"]) == 0
    return out


def _png(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_figure_draws_truth_stored_in_another_orientation_where_it_lies(
        segmented, real_ct_path, real_labels_path, tmp_path, capsys):
    # The same truth stored flipped along y (as the DICOM example's label is): same figure.
    truth = sitk.ReadImage(str(real_labels_path))
    flipped = sitk.Flip(truth, (False, True, False))
    assert not np.array_equal(sitk.GetArrayViewFromImage(flipped), sitk.GetArrayViewFromImage(truth))
    sitk.WriteImage(flipped, str(tmp_path / "flipped.nii.gz"))
    pngs = []
    for name, truth_path in (("a.png", real_labels_path), ("b.png", tmp_path / "flipped.nii.gz")):
        argv = ["figure", str(real_ct_path), str(segmented / "seg.nii.gz"), "-o", str(tmp_path / name),
                "--attention-dir", str(segmented / "attention"), "--truth", str(truth_path), "--truth-label", "7"]
        assert main(argv) == 0
        pngs.append(_png(tmp_path / name))
    assert pngs[0].shape[0] > 200 and np.array_equal(pngs[0], pngs[1])
    # Without maps: one column fewer per gate (4 gates in the tiny attention model).
    assert main(["figure", str(real_ct_path), str(segmented / "seg.nii.gz"), "-o", str(tmp_path / "c.png")]) == 0
    assert _png(tmp_path / "c.png").shape[1] < pngs[0].shape[1] / 2
    assert "wrote" in capsys.readouterr().out


def test_bad_input_is_one_line_and_writes_nothing(segmented, real_ct_path, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["figure", str(real_ct_path), str(segmented / "seg.nii.gz"), "-o", str(tmp_path / "x.png"),
                 "--attention-dir", str(empty)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "holds no attention_" in err and str(empty) in err
    assert not (tmp_path / "x.png").exists()
    code = main(["figure", str(real_ct_path), str(segmented / "seg.nii.gz"), "-o", str(real_ct_path)])
    assert code == 2 and not list(tmp_path.glob("*.png"))
