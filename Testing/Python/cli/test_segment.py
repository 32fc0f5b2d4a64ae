"""End-to-end tests of `attention-unet-segment segment` on the real CT with a tiny random model.

A random model segments nothing meaningful; these tests prove the plumbing a user relies on:
geometry of every output, file formats Slicer reads, click-to-segment, and the bad-input contract
(one line naming the file, exit code 2, nothing written, input untouched).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli.main import main


def _same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_segment_writes_every_output_on_the_input_grid(real_ct_path, tiny_model_path, tmp_path, capsys):
    before = _digest(real_ct_path)
    out = tmp_path / "pancreas.seg.nrrd"
    code, stdout, stderr = _run([
        "segment", str(real_ct_path), "-o", str(out), "--model", str(tiny_model_path),
        "--attention-dir", str(tmp_path / "attention"), "--probabilities", str(tmp_path / "prob.nii.gz"),
        "--summary-json", str(tmp_path / "summary.json"), "--progress", "none", "--device", "cpu",
        "--no-largest-component", "--no-fill-holes", "--attention-grid", "ct", "--probability-grid", "ct",
    ], capsys)
    assert code == 0, stderr
    assert _digest(real_ct_path) == before, "the input CT was modified"

    ct = sitk.ReadImage(str(real_ct_path))
    labels = sitk.ReadImage(str(out))
    _same_grid(labels, ct)
    probability = sitk.ReadImage(str(tmp_path / "prob.nii.gz"))
    _same_grid(probability, ct)
    p = sitk.GetArrayFromImage(probability)
    assert p.dtype == np.float32 and 0.0 <= p.min() and p.max() <= 1.0
    # Without post-processing the labelmap is exactly p > 0.5.
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels) > 0, p > 0.5)

    gates = sorted(f.name for f in (tmp_path / "attention").iterdir())
    assert gates == ["attention_gate2.nii.gz", "attention_gate3.nii.gz", "attention_gate4.nii.gz"]
    for name in gates:
        gate = sitk.ReadImage(str(tmp_path / "attention" / name))
        _same_grid(gate, ct)
        values = sitk.GetArrayFromImage(gate)
        assert values.dtype == np.float32
        assert 0.0 <= values.min() and values.max() <= 1.0 and values.std() > 0

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["gates"] == ["gate2", "gate3", "gate4"] and summary["attention_grid"] == "ct"
    assert summary["device"] == "cpu"
    stages = ("read", "preprocess", "inference", "restore", "postprocess", "write")
    assert all(summary["seconds"][stage] >= 0.0 for stage in stages)
    assert summary["seconds"]["total"] == pytest.approx(sum(summary["seconds"][s] for s in stages))
    voxel_ml = np.prod(ct.GetSpacing()) / 1000.0
    expected_ml = (sitk.GetArrayFromImage(labels) == 1).sum() * voxel_ml
    assert summary["volume_ml"]["Pancreas"] == pytest.approx(expected_ml)
    assert ("nothing was found" in stderr) == (expected_ml == 0)
    # No temporary files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention", "pancreas.seg.nrrd", "prob.nii.gz", "summary.json"]


def test_maps_on_their_own_grids_by_default(real_ct_path, tiny_model_path, tmp_path, capsys):
    """By default each map keeps the grid it was computed on: the probability on the model grid,
    gate s on the model grid's 1/s coarse grid, with the geometry that puts every voxel where the
    network saw it (so viewers, resampling in physical space, overlay them exactly)."""
    from AttentionUNetSegmentLib.core.geometry import coarse_grid
    from AttentionUNetSegmentLib.core.preprocessing import to_model_grid
    from AttentionUNetSegmentLib.files.modelfile import load_model

    model, spec = load_model(tiny_model_path)
    ct = sitk.ReadImage(str(real_ct_path))
    model_grid = to_model_grid(ct, spec.spacing_zyx)
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(tmp_path / "seg.nii.gz"), "--model",
                            str(tiny_model_path), "--attention-dir", str(tmp_path / "att"), "--probabilities",
                            str(tmp_path / "p.nrrd"), "--progress", "none", "--device", "cpu"], capsys)
    assert code == 0, stderr
    _same_grid(sitk.ReadImage(str(tmp_path / "seg.nii.gz")), ct)
    probability = sitk.ReadImage(str(tmp_path / "p.nrrd"))
    _same_grid(probability, model_grid)
    for name, scale in model.gate_scales.items():
        gate = sitk.ReadImage(str(tmp_path / "att" / f"attention_{name}.nii.gz"))
        _same_grid(gate, coarse_grid(model_grid, scale))
        values = sitk.GetArrayFromImage(gate)
        assert values.dtype == np.float32 and 0.0 <= values.min() and values.max() <= 1.0 and values.std() > 0


@pytest.mark.parametrize("name", ["seg.nii.gz.nii.gz", "SEG.NII.GZ", "x.MHA", "y.Mhd", "ünï code.nrrd",
                                  "x.seg.nrrd.seg.nrrd", ".hidden.nii", "a" * 248 + ".nii.gz"])
def test_odd_output_names_are_written_under_exactly_that_name(name, real_ct_path, empty_model_path, tmp_path,
                                                              capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(out_dir / name), "--model",
                            str(empty_model_path), "--progress", "none", "--device", "cpu"], capsys)
    assert code == 0, stderr
    written = sorted(p.name for p in out_dir.iterdir())
    companion = {"y.Mhd": ["y.zraw"]}.get(name, [])  # MetaImage keeps its voxels beside the header
    assert written == sorted([name] + companion)
    # Readable in its format (ITK chooses the reader from a lower-case extension).
    readable = tmp_path / ("check" + name[name.index("."):].lower() if not name.startswith(".") else "check.nii")
    for path in out_dir.iterdir():
        if path.name == name:
            readable.write_bytes(path.read_bytes())
    if name != "y.Mhd":  # the header names its companion, which the copy does not carry
        _same_grid(sitk.ReadImage(str(readable)), sitk.ReadImage(str(real_ct_path)))


def test_output_name_too_long_is_one_line(real_ct_path, empty_model_path, tmp_path, capsys):
    name = "a" * 260 + ".nii.gz"
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(tmp_path / name), "--model",
                            str(empty_model_path), "--progress", "none", "--device", "cpu"], capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "longer than 255 bytes" in stderr
    assert list(tmp_path.iterdir()) == []


def test_empty_result_is_written_and_flagged(real_ct_path, empty_model_path, tmp_path, capsys):
    # Finding nothing is a valid result (valid files, exit 0), but the user is told in one line.
    out = tmp_path / "pancreas.nii.gz"
    code, stdout, stderr = _run(["segment", str(real_ct_path), "-o", str(out), "--model", str(empty_model_path),
                                 "--progress", "none", "--device", "cpu"], capsys)
    assert code == 0, stderr
    assert "Pancreas 0.0 mL" in stdout
    assert stderr.strip() == ("warning: ct.nii.gz: nothing was found for Pancreas; the segment is empty "
                              "(the model may not suit this scan)")
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(out))).any()


def test_seg_nrrd_output_opens_in_slicer_terms(real_ct_path, tiny_model_path, tmp_path, capsys):
    slicerio = pytest.importorskip("slicerio")
    out = tmp_path / "out.seg.nrrd"
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(out), "--model", str(tiny_model_path),
                            "--progress", "none"], capsys)
    assert code == 0, stderr
    segmentation = slicerio.read_segmentation(str(out))
    (segment,) = segmentation["segments"]
    assert segment["name"] == "Pancreas"
    assert segment["labelValue"] == 1
    assert "15776009" in str(segment.get("terminology", ""))


def test_point_restricts_to_the_region_around_the_click(real_ct_path, tiny_model_path, tmp_path, capsys):
    ct = sitk.ReadImage(str(real_ct_path))
    # A RAS point in the middle of the volume (Slicer shows RAS; SimpleITK is LPS).
    centre_lps = ct.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in ct.GetSize()])
    ras = (-centre_lps[0], -centre_lps[1], centre_lps[2])
    out = tmp_path / "click.nii.gz"
    code, _, stderr = _run([
        "segment", str(real_ct_path), "-o", str(out), "--model", str(tiny_model_path),
        "--point", ",".join(f"{v:.2f}" for v in ras), "--roi-size", "60", "--progress", "none",
        "--attention-dir", str(tmp_path / "att"), "--attention-grid", "ct",
    ], capsys)
    assert code == 0, stderr
    labels = sitk.ReadImage(str(out))
    _same_grid(labels, ct)
    gate = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "att" / "attention_gate2.nii.gz")))
    # Outside the 60 mm cube (+ one voxel of rounding) nothing was computed.
    idx = np.argwhere(gate > 0)
    assert len(idx) > 0
    extent_mm = (idx.max(0) - idx.min(0) + 1) * np.array(ct.GetSpacing()[::-1])
    assert np.all(extent_mm <= 60 + 2 * max(ct.GetSpacing()))
    mask = sitk.GetArrayFromImage(labels) > 0
    if mask.any():  # a random model may find nothing; when it finds something it is one component
        # Post-processing keeps one 26-connected component.
        assert sitk.GetArrayFromImage(sitk.ConnectedComponent(labels > 0, True)).max() == 1


def _write(array: np.ndarray, path: Path, vector=False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=vector)
    image.SetSpacing((2.0,) * image.GetDimension())
    sitk.WriteImage(image, str(path))
    return path


def _bad_inputs(tmp_path: Path, real_ct_path: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    ct = rng.normal(0, 300, (40, 40, 40)).astype(np.float32)
    nan = ct.copy()
    nan[3, 4, 5] = np.nan
    inf = ct.copy()
    inf[1, 1, 1] = np.inf
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really a gzip NIfTI at all")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(real_ct_path.read_bytes()[:5000])
    return {
        "missing": (tmp_path / "nope.nii.gz", "does not exist"),
        "corrupt": (corrupt, ""),
        "truncated": (truncated, ""),
        "2d": (_write(ct[0], tmp_path / "slice.nii.gz"), "2D"),
        "4d": (_write(np.stack([ct[:10]] * 3), tmp_path / "four.nii.gz"), "4D"),
        "rgb": (_write(np.stack([ct] * 3, axis=-1), tmp_path / "rgb.mha", vector=True), "component"),
        "nan": (_write(nan, tmp_path / "nan.nii.gz"), "NaN"),
        "inf": (_write(inf, tmp_path / "inf.nii.gz"), "nfinite"),
        "constant": (_write(np.full((40, 40, 40), -1000, np.int16), tmp_path / "flat.nii.gz"), "single value"),
        "tiny": (_write(ct[:4, :4, :4], tmp_path / "tiny.nii.gz"), "too small"),
    }


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "2d", "4d", "rgb", "nan", "inf", "constant", "tiny"])
def test_bad_input_gives_one_line_exit_2_and_no_output(case, real_ct_path, tiny_model_path, tmp_path, capsys):
    path, fragment = _bad_inputs(tmp_path, real_ct_path)[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, stdout, stderr = _run(["segment", str(path), "-o", str(out_dir / "seg.nii.gz"), "--model",
                                 str(tiny_model_path), "--progress", "none",
                                 "--attention-dir", str(out_dir / "att")], capsys)
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and path.name in lines[0] and fragment in lines[0]
    assert "Traceback" not in stderr
    assert list(out_dir.iterdir()) == []  # no file, and no empty attention folder either


def test_refuses_to_overwrite_the_input(real_ct_path, tiny_model_path, tmp_path, capsys):
    copy = tmp_path / "ct.nii.gz"
    copy.write_bytes(real_ct_path.read_bytes())
    before = _digest(copy)
    os.chdir(tmp_path)
    code, _, stderr = _run(["segment", str(copy), "-o", "./ct.nii.gz", "--model", str(tiny_model_path)], capsys)
    assert code == 2 and "overwrite" in stderr and "ct.nii.gz" in stderr
    assert _digest(copy) == before


def test_unwritable_output_and_broken_model(real_ct_path, tiny_model_path, tmp_path, capsys):
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(tmp_path / "no" / "such" / "x.nii.gz"),
                            "--model", str(tiny_model_path)], capsys)
    assert code == 2 and "x.nii.gz" in stderr
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_model_path.read_bytes()[:1000])
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(tmp_path / "y.nii.gz"),
                            "--model", str(broken)], capsys)
    assert code == 2 and "broken.pt" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.nii.gz").exists()


def test_module_entry_point_exit_code_and_help(tmp_path):
    """The installed entry (`python -m AttentionUNetSegmentLib`) documents every option and exits 2 on bad input."""
    run = subprocess.run([sys.executable, "-m", "AttentionUNetSegmentLib", "segment", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0
    for option in ("--output", "--attention-dir", "--probabilities", "--model", "--device", "--overlap", "--point"):
        assert option in run.stdout
    run = subprocess.run([sys.executable, "-m", "AttentionUNetSegmentLib", "segment", str(tmp_path / "missing.nrrd"),
                          "-o", str(tmp_path / "o.nii.gz")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "missing.nrrd" in run.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_reported_as_such(real_ct_path, tiny_model_path, tmp_path, capsys):
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(tmp_path / "x.nii.gz"),
                            "--model", str(tiny_model_path), "--device", "cuda"], capsys)
    assert code == 2 and "CUDA" in stderr and "ct.nii.gz" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_point_outside_the_ct_is_reported_in_ras(real_ct_path, tiny_model_path, tmp_path, capsys):
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(tmp_path / "x.nii.gz"),
                            "--model", str(tiny_model_path), "--point", "1000,0,0"], capsys)
    assert code == 2, stderr
    assert "ct.nii.gz" in stderr and "(1000, 0, 0)" in stderr and "outside" in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_negative_first_coordinate_after_a_space_is_a_point(real_ct_path, tiny_model_path, tmp_path, capsys):
    """`--point -12.5,30,4` as a user types it at a terminal (the module writes `--point=...`)."""
    code, _, stderr = _run(["segment", str(real_ct_path), "-o", str(tmp_path / "x.nii.gz"),
                            "--model", str(tiny_model_path), "--point", "-1000.5,30,4"], capsys)
    assert code == 2, stderr
    assert "expected one argument" not in stderr and "(-1000.5, 30, 4)" in stderr and "outside" in stderr


@pytest.mark.parametrize("argv, expected", [
    (["--point", "-12.5,30,4"], ["--point=-12.5,30,4"]),
    (["--point", "-1e2,-3,-4.5", "-o", "x"], ["--point=-1e2,-3,-4.5", "-o", "x"]),
    (["--point", "12.5,-30,4"], ["--point", "12.5,-30,4"]),              # argparse reads these itself
    (["--point", "--help"], ["--point", "--help"]),                      # an option stays an option
    (["--point=-1,2,3"], ["--point=-1,2,3"]),
    (["--", "--point", "-1,2,3"], ["--", "--point", "-1,2,3"]),          # positional after --
    (["--overlap", "-1,2,3"], ["--overlap", "-1,2,3"]),                  # only options that take points
])
def test_negative_point_values_are_attached_to_their_option(argv, expected):
    from AttentionUNetSegmentLib.cli.argtypes import join_negative_values

    assert join_negative_values(argv) == expected


def test_help_says_how_overlap_becomes_the_window_step_and_the_cohort_rule(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "rounded down to a multiple of 16 voxels" in shown and "0.25 with a 96-voxel patch runs at 0.33" in shown
    assert "With several CTs, or a folder of them (a cohort), the outputs are folders" in shown
