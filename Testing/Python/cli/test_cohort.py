"""Cohort mode of `segment`: a folder or several CTs, a bad case skipped with its one line, a
summary, a non-zero exit if any case failed, and each torchrun rank taking its share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli.main import main
from AttentionUNetSegmentLib.files.cases import Case, find_cases, shard


@pytest.fixture(scope="module")
def small_ct(real_ct_path, tmp_path_factory) -> Path:
    """A crop of the real CT (60 x 60 x 20 voxels of 3 mm): big enough for the network, quick."""
    ct = sitk.ReadImage(str(real_ct_path))
    path = tmp_path_factory.mktemp("ct") / "small.nii.gz"
    sitk.WriteImage(ct[30:90, 20:80, 5:25], str(path))
    return path


def _cohort(folder: Path, small_ct: Path, names=("a", "c")) -> Path:
    folder.mkdir()
    for name in names:
        (folder / f"{name}.nii.gz").write_bytes(small_ct.read_bytes())
    return folder


def test_folder_with_a_corrupt_case_writes_the_others_and_fails(small_ct, tiny_model_path, tmp_path, capsys):
    cohort = _cohort(tmp_path / "in", small_ct)
    (cohort / "b.nii.gz").write_bytes(b"\x1f\x8b not really a gzip NIfTI at all")
    out = tmp_path / "out"
    code = main(["segment", str(cohort), "-o", str(out), "--model", str(tiny_model_path), "--progress", "none",
                 "--device", "cpu", "--attention-dir", str(tmp_path / "att"), "--summary-json",
                 str(tmp_path / "cohort.json")])
    captured = capsys.readouterr()
    assert code == 3   # some cases failed; distinct from 2, bad input or usage
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "c.nii.gz"]
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "b.nii.gz" in errors[0] and "Traceback" not in captured.err
    assert "2 ok, 1 failed of 3 cases" in captured.out and "cases per minute" in captured.out
    for name in ("a", "c"):
        _check_on_grid(out / f"{name}.nii.gz", small_ct)
        assert sorted(p.name for p in (tmp_path / "att" / name).iterdir()) == [
            "attention_gate2.nii.gz", "attention_gate3.nii.gz", "attention_gate4.nii.gz"]
    summary = json.loads((tmp_path / "cohort.json").read_text())
    assert summary["cases_ok"] == 2 and summary["cases_failed"] == 1 and summary["cases_per_minute"] > 0
    assert [Path(c["input"]).name for c in summary["cases"]] == ["a.nii.gz", "c.nii.gz"]
    assert set(summary["cases"][0]["seconds"]) >= {"read", "preprocess", "inference", "restore", "postprocess",
                                                    "write"}
    assert Path(summary["failures"][0]["input"]).name == "b.nii.gz"


def _check_on_grid(path: Path, ct_path: Path) -> None:
    labels, ct = sitk.ReadImage(str(path)), sitk.ReadImage(str(ct_path))
    assert labels.GetSize() == ct.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), ct.GetOrigin(), atol=1e-4)


def test_several_files_all_good_exit_zero_and_same_result_as_single(small_ct, tiny_model_path, tmp_path,
                                                                    capsys):
    cohort = _cohort(tmp_path / "in", small_ct)
    code = main(["segment", str(cohort / "a.nii.gz"), str(cohort / "c.nii.gz"), "-o", str(tmp_path / "out"),
                 "--model", str(tiny_model_path), "--progress", "none", "--device", "cpu",
                 "--output-type", "seg.nrrd", "--no-largest-component", "--no-fill-holes"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.seg.nrrd", "c.seg.nrrd"]
    code = main(["segment", str(cohort / "a.nii.gz"), "-o", str(tmp_path / "single.seg.nrrd"), "--model",
                 str(tiny_model_path), "--progress", "none", "--device", "cpu", "--no-largest-component",
                 "--no-fill-holes"])
    assert code == 0
    single = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "single.seg.nrrd")))
    for name in ("a", "c"):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / f"{name}.seg.nrrd"))),
                                      single)


@pytest.mark.parametrize("rank, expected", [(0, ["a.nii.gz", "c.nii.gz"]), (1, ["b.nii.gz"])])
def test_each_torchrun_rank_takes_its_share(rank, expected, small_ct, tiny_model_path, tmp_path, capsys,
                                            monkeypatch):
    cohort = _cohort(tmp_path / "in", small_ct, names=("a", "b", "c"))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    code = main(["segment", str(cohort), "-o", str(tmp_path / "out"), "--model", str(tiny_model_path),
                 "--progress", "none", "--device", "cpu", "--summary-json", str(tmp_path / "s.json")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == expected
    assert f"(rank {rank} of 2)" in captured.out
    summary = json.loads((tmp_path / f"s.rank{rank}.json").read_text())
    assert summary["cases_ok"] == len(expected) and summary["world_size"] == 2


def test_find_cases_and_shard(tmp_path, small_ct):
    cohort = _cohort(tmp_path / "in", small_ct, names=("b", "a"))
    (cohort / "series").mkdir()  # a sub-folder is a case (a DICOM series)
    (cohort / "notes.txt").write_text("not a CT")
    (cohort / ".a.nii.gz.tmp-x").mkdir()  # our own temporary folders are not cases
    cases = find_cases([cohort])
    assert [(c.name, c.path.name) for c in cases] == [("a", "a.nii.gz"), ("b", "b.nii.gz"), ("series", "series")]
    assert find_cases([cohort / "a.nii.gz"]) == [Case("a", cohort / "a.nii.gz")]
    with pytest.raises(Exception, match="same case name 'a'"):
        find_cases([cohort, cohort / "a.nii.gz"])
    assert [c.name for c in shard(cases, 0, 2)] == ["a", "series"]
    assert [c.name for c in shard(cases, 1, 2)] == ["b"]
    assert shard(cases, 2, 3) == [cases[2]] and shard(cases, 0, 1) == cases
    with pytest.raises(ValueError):
        shard(cases, 2, 2)


def test_cohort_refuses_a_point_and_a_file_as_output_folder(small_ct, tiny_model_path, tmp_path, capsys):
    cohort = _cohort(tmp_path / "in", small_ct)
    code = main(["segment", str(cohort), "-o", str(tmp_path / "out"), "--model", str(tiny_model_path),
                 "--point", "0,0,0"])
    assert code == 2 and "--point" in capsys.readouterr().err
    (tmp_path / "file.nii.gz").write_bytes(b"x")
    code = main(["segment", str(cohort), "-o", str(tmp_path / "file.nii.gz"), "--model", str(tiny_model_path)])
    err = capsys.readouterr().err
    assert code == 2 and "is a file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
