"""The Slicer <-> engine contract (service/contract.py) round-trips: the flags a job writes are
parsed by the command line into the request the module meant; the files and the summary a real
run writes are what the module reads; the in-process path gives the same summary keys; progress
lines and exit codes mean one thing on both sides."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli.argtypes import join_negative_values
from AttentionUNetSegmentLib.cli.main import build_parser, main
from AttentionUNetSegmentLib.cli.segment import request_from_args
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.options import DEFAULT_OVERLAP
from AttentionUNetSegmentLib.service import contract
from AttentionUNetSegmentLib.service.contract import (
    ATTENTION_DIR,
    INPUT_FILE,
    JOB_MAP_FORMAT,
    LABELS_FILE,
    SUMMARY_FILE,
    SUMMARY_KEYS,
    JobSettings,
    read_progress_line,
    read_summary,
    segment_arguments,
)


def _request(argv: list[str]):
    return request_from_args(build_parser().parse_args(join_negative_values(argv)))


@pytest.mark.parametrize("settings", [
    JobSettings(),
    JobSettings(model_path="/models/m.pt", device="cuda", overlap=0.25, point_ras=(-12.5, 30.0, -7.25)),
    JobSettings(device="cpu", overlap=0.0, point_ras=(1e-3, -250.125, 4.0)),
], ids=["defaults", "click", "small-values"])
def test_the_flags_a_job_writes_are_the_request_the_module_meant(settings, tmp_path):
    request = _request(["segment", *segment_arguments(tmp_path, settings)])
    assert request.inputs == (tmp_path / INPUT_FILE,)
    assert request.outputs.labels == tmp_path / LABELS_FILE
    assert request.outputs.attention_dir == tmp_path / ATTENTION_DIR
    assert request.outputs.summary == tmp_path / SUMMARY_FILE
    assert request.outputs.attention_format == JOB_MAP_FORMAT and request.progress == "json"
    assert request.model == (None if settings.model_path is None else Path(settings.model_path))
    assert request.window.device == settings.device and request.window.overlap == settings.overlap
    assert request.region.point_ras == settings.point_ras


def test_job_settings_take_the_defaults_and_checks_of_the_options():
    assert JobSettings().overlap == DEFAULT_OVERLAP
    with pytest.raises(InputError, match=r"overlap must be in \[0, 1\)"):
        JobSettings(overlap=1.0)
    with pytest.raises(InputError, match="three finite numbers"):
        JobSettings(point_ras=(1.0, 2.0))


def test_progress_lines_round_trip():
    stream = io.StringIO()
    contract.make_progress("json", stream)(0.123456, "Window 3/8")
    assert read_progress_line(stream.getvalue().strip()) == (0.1235, "Window 3/8")
    assert read_progress_line(contract.progress_line(1.7, "done")) == (1.0, "done")   # clamped
    for other in ("error: ct.nrrd: is not 3D", "{not json", '{"message": "no fraction"}', ""):
        assert read_progress_line(other) is None
    assert contract.make_progress("none") is None


def test_exit_codes_are_distinct_and_in_the_help(capsys):
    codes = [contract.EXIT_OK, contract.EXIT_BUG, contract.EXIT_BAD_INPUT, contract.EXIT_CASES_FAILED,
             contract.EXIT_CANCELLED]
    assert len(set(codes)) == len(codes) == 5
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for code in codes:
        assert f"{code} " in shown
    assert "3 some cases of a cohort failed" in shown


@pytest.fixture(scope="module")
def small_ct(real_ct_path) -> sitk.Image:
    ct = sitk.ReadImage(str(real_ct_path))
    return sitk.RegionOfInterest(ct, [64, 48, 16], [20, 30, 2])


def test_a_run_writes_what_the_module_reads_and_in_process_says_the_same(small_ct, tiny_model_path, tmp_path,
                                                                         monkeypatch):
    from AttentionUNetSegmentLib.scene.results import load_output_files, run_segmentation_in_process

    settings = JobSettings(model_path=str(tiny_model_path), device="cpu", overlap=0.0)
    sitk.WriteImage(small_ct, str(tmp_path / INPUT_FILE))
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(["segment", *segment_arguments(tmp_path, settings)]) == contract.EXIT_OK
    monkeypatch.undo()
    progress = [read_progress_line(line) for line in stderr.getvalue().splitlines()]
    fractions = [p[0] for p in progress if p is not None]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0

    summary = read_summary(tmp_path / SUMMARY_FILE)
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["input"] == str(tmp_path / INPUT_FILE) and summary["attention_grid"] == "model"
    output = load_output_files(tmp_path)
    assert sorted(output.attention) == summary["gates"] == ["gate2", "gate3", "gate4"]
    assert output.labels == summary["labels"]

    in_process = run_segmentation_in_process(small_ct, settings.model_path, settings.device, settings.overlap)
    assert tuple(in_process.summary) == SUMMARY_KEYS
    assert in_process.summary["input"] is None
    for key in ("labels", "volume_ml", "device", "precision", "windows", "gates", "attention_grid"):
        assert in_process.summary[key] == summary[key], key
    assert {k: v for k, v in in_process.summary["model"].items()} == summary["model"]
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(in_process.labelmap),
                                  sitk.GetArrayViewFromImage(output.labelmap))
