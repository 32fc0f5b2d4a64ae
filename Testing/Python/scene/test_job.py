"""The background job: the real `segment` command with a tiny model, its command line, and its
log lines written on the polling (GUI) thread, never on the reader thread."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from AttentionUNetSegmentLib.scene import job as job_module  # noqa: E402
from AttentionUNetSegmentLib.scene import processes  # noqa: E402
from AttentionUNetSegmentLib.scene.job import FAILED, SUCCEEDED, SegmentationJob  # noqa: E402
from AttentionUNetSegmentLib.service.contract import INPUT_FILE, LABELS_FILE  # noqa: E402
from mrml_helpers import export_segment  # noqa: E402


def test_job_runs_the_segment_command_and_the_result_fills_the_scene(mrml, finished_job, small_ct):
    job, status, files, work_root = finished_job
    assert status.state == SUCCEEDED, f"{status.error}\n" + "\n".join(job.log_lines)
    assert status.fraction == 1.0
    assert not job.work_dir.exists() and list(work_root.iterdir()) == []   # no temporary files left
    assert sorted(files) == ["attention_gate2.nrrd", "attention_gate3.nrrd", "attention_gate4.nrrd", "labels"]
    output = job.result()
    assert output.summary["device"] == "cpu" and output.summary["gates"] == ["gate2", "gate3", "gate4"]
    assert output.labels[0]["name"] == "Pancreas"
    ct = mrml.add_ct(small_ct)
    applied = mrml.logic.apply_result(ct, output)
    exported = export_segment(mrml, applied.segmentation_node, ct)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(exported), files["labels"])
    for gate in ("gate2", "gate3", "gate4"):
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(applied.overlay_nodes[gate]),
                                      files[f"attention_{gate}.nrrd"])
    assert applied.volume_ml["Pancreas"] == pytest.approx(output.summary["volume_ml"]["Pancreas"], rel=1e-6)


def test_job_command_line_contract(small_ct, tmp_path):
    job = SegmentationJob(small_ct, model_path="/models/m.pt", device="cuda", overlap=0.25,
                          point_ras=(-12.5, 30.0, -7.25), python_executable="/py")
    job.work_dir = tmp_path
    command = job.command()
    assert command[:4] == ["/py", "-m", "AttentionUNetSegmentLib", "segment"]
    assert command[4] == str(tmp_path / INPUT_FILE)
    assert command[command.index("-o") + 1] == str(tmp_path / LABELS_FILE)
    assert command[command.index("--attention-format") + 1] == "nrrd"
    assert command[command.index("--progress") + 1] == "json"
    assert command[command.index("--device") + 1] == "cuda"
    assert command[command.index("--model") + 1] == "/models/m.pt"
    assert "--overlap=0.25" in command
    assert "--point=-12.5,30,-7.25" in command    # "=": a negative coordinate is not an option
    assert "--model" not in SegmentationJob(small_ct, python_executable="/py").command()
    env = job.environment()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == processes.lib_parent_dir()
    assert env["PYTHONIOENCODING"] == "utf-8"


@pytest.mark.skipif(os.name == "nt", reason="the fake interpreter is a POSIX script")
def test_log_lines_are_written_on_the_polling_thread(tmp_path, caplog):
    """Inside Slicer a log record goes to Qt's error log model, which only the GUI thread may touch:
    the reader thread queues lines; poll() (the GUI's timer) writes them."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n"
                    "echo '{\"fraction\": 0.5, \"message\": \"half\"}' >&2\n"
                    "echo 'Pancréas: café ☕ warning' >&2\n"
                    "echo 'error: /x/ct.nrrd: is not 3D' >&2\nexit 2\n", encoding="utf-8")
    fake.chmod(0o755)
    caplog.set_level(logging.INFO, logger=job_module.logger.name)
    job = SegmentationJob(sitk.Image([4, 4, 4], sitk.sitkInt16), python_executable=str(fake),
                          work_root=str(tmp_path)).start()
    job._thread.join(timeout=30)
    assert not job._thread.is_alive()
    assert [r for r in caplog.records if r.name == job_module.logger.name] == []   # nothing from the reader
    status = job.poll()
    assert status.state == FAILED and status.error == "/x/ct.nrrd: is not 3D"
    records = [r for r in caplog.records if r.name == job_module.logger.name]
    assert [r.getMessage() for r in records] == ["segment: Pancréas: café ☕ warning",
                                                 "segment: error: /x/ct.nrrd: is not 3D"]
    assert {r.thread for r in records} == {threading.get_ident()}
    job.cleanup()


def test_wait_returns_the_final_state_and_result_refuses_before_success(small_ct, tmp_path):
    job = SegmentationJob(small_ct, python_executable=sys.executable, work_root=str(tmp_path),
                          extra_args=["--no-such-option"])
    with pytest.raises(RuntimeError, match="no result: the job is idle"):
        job.result()
    job.start()
    with pytest.raises(RuntimeError, match="a job can be started once"):
        job.start()
    status = job.wait(timeout=60)
    assert status.state == FAILED and "\n" not in status.error and status.elapsed_s > 0
    time.sleep(0.01)
    assert job.poll().elapsed_s == status.elapsed_s            # the clock stops when the job ends
    job.cleanup()
    assert not job.work_dir.exists()


def _wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition() and time.perf_counter() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.skipif(os.name == "nt", reason="the fake interpreter is a POSIX script")
def test_cancel_returns_at_once_and_stops_the_tree_in_the_background(tmp_path):
    """Issue 19, defect 6: Cancel runs on the GUI thread. A process that ignores SIGTERM made it wait
    the grace period, the process and the reader thread (up to 8 s); now it returns at once and the
    kill, the waiting and the deletion happen off the GUI thread."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\ntrap '' TERM\necho '{\"fraction\": 0.1, \"message\": \"busy\"}' >&2\n"
                    "while true; do sleep 0.05; done\n", encoding="utf-8")
    fake.chmod(0o755)
    (tmp_path / "work").mkdir()
    job = SegmentationJob(sitk.Image([4, 4, 4], sitk.sitkInt16), python_executable=str(fake),
                          work_root=str(tmp_path / "work")).start()
    assert _wait_until(lambda: job.poll().fraction > 0)
    start = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - start < 0.3
    assert job.poll().state == job_module.CANCELLED
    assert _wait_until(lambda: job.process.poll() is not None, timeout=5.0), "the process still runs"
    assert _wait_until(lambda: not job.work_dir.exists(), timeout=5.0)
    assert list((tmp_path / "work").iterdir()) == []


def test_cancel_while_the_input_is_written_leaves_no_partial_file(tmp_path, monkeypatch):
    """Issue 19, defect 6: Cancel while a multi-GB input.nrrd is still being written. Where the open
    file cannot be deleted (Windows), the folder was left behind for good (rmtree ignore_errors);
    now the deletion waits for the writer, and a folder that still cannot be deleted is removed
    at the next start."""
    writing = threading.Event()
    real_rmtree, real_write = job_module.shutil.rmtree, sitk.WriteImage

    def slow_write(image, path, *args, **kwargs):           # a large CT on a slow disk
        writing.set()
        with open(path, "wb") as file:
            file.write(b"NRRD0004\n" + b"\0" * 1000)
            time.sleep(2.5)
        writing.clear()

    def rmtree_like_windows(path, ignore_errors=False, **kwargs):   # an open file cannot be deleted
        if writing.is_set():
            if ignore_errors:
                return
            raise PermissionError(f"{path}: in use by another process")
        real_rmtree(path, ignore_errors=ignore_errors, **kwargs)

    monkeypatch.setattr(sitk, "WriteImage", slow_write)
    monkeypatch.setattr(job_module.shutil, "rmtree", rmtree_like_windows)
    work_root = tmp_path / "work"
    work_root.mkdir()
    job = SegmentationJob(sitk.Image([4, 4, 4], sitk.sitkInt16), python_executable=sys.executable,
                          work_root=str(work_root)).start()
    assert _wait_until(writing.is_set)
    job.cancel()
    assert _wait_until(lambda: not job.work_dir.exists(), timeout=10.0), "a partial input.nrrd was left behind"
    monkeypatch.setattr(sitk, "WriteImage", real_write)

    # A folder that could not be deleted at all (a virus scanner holds the file): the next start does it.
    stuck = SegmentationJob(sitk.Image([4, 4, 4], sitk.sitkInt16), python_executable=sys.executable,
                            work_root=str(work_root))
    monkeypatch.setattr(job_module.shutil, "rmtree", lambda path, ignore_errors=False, **kwargs: (
        None if ignore_errors else (_ for _ in ()).throw(PermissionError(path))))
    stuck.start()
    stuck.cancel()
    assert stuck.wait_stopped(timeout=30)                   # gave up after its retries
    assert stuck.work_dir.exists()
    monkeypatch.setattr(job_module.shutil, "rmtree", real_rmtree)
    after = SegmentationJob(sitk.Image([4, 4, 4], sitk.sitkInt16), python_executable=sys.executable,
                            work_root=str(work_root), extra_args=["--no-such-option"]).start()
    assert not stuck.work_dir.exists()
    after.wait(timeout=60)
    after.cleanup()
    assert list(work_root.iterdir()) == []
