"""PyTorch checked without importing it, and installed by the route that picks the CUDA build for
the GPU found (SlicerPyTorch's PyTorchUtils when present, else light-the-torch), restart offered."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip("slicer")

from AttentionUNetSegmentLib.scene import processes, pytorch_install  # noqa: E402

from torch_blocker import write_torch_blocker  # noqa: E402


def test_torch_is_found_without_being_imported(tmp_path, monkeypatch):
    assert pytorch_install.torch_found_here()
    assert pytorch_install.torch_found_in(sys.executable)
    code = ("import sys; from AttentionUNetSegmentLib.scene import pytorch_install as p; "
            "print(p.torch_found_here(), 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": processes.lib_parent_dir()}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["True", "False"]
    # A Python without torch (what PythonSlicer is on a stock Slicer):
    monkeypatch.setenv("PYTHONPATH", str(write_torch_blocker(tmp_path / "blocker")))
    monkeypatch.setenv("BLOCK_TORCH", "1")
    assert not pytorch_install.torch_found_in(sys.executable)


def test_pip_constraints_pin_packages_slicer_ships(tmp_path):
    path = pytorch_install.write_constraints_file(str(tmp_path))
    lines = open(path, encoding="utf-8").read().splitlines()
    assert f"numpy=={metadata.version('numpy')}" in lines
    assert f"SimpleITK=={metadata.version('SimpleITK')}" in lines


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.perf_counter() + timeout
    while not condition() and time.perf_counter() < deadline:
        time.sleep(0.02)
    return condition()


def test_the_install_always_pins_what_slicer_ships_and_asks_for_the_minimum_torch():
    """Issue 19, defect 11 (and 5): the constraints apply to every route the module takes. The
    SlicerPyTorch route did not pass them; the module now runs light-the-torch itself (the tool
    SlicerPyTorch uses) whether or not the PyTorch extension is installed."""
    plan = pytorch_install.install_plan(python_executable="/slicer/PythonSlicer", constraints_path="/c.txt")
    assert plan.commands == [
        ["/slicer/PythonSlicer", "-m", "pip", "install", "--disable-pip-version-check", "light-the-torch>=0.7",
         "--constraint", "/c.txt"],
        ["/slicer/PythonSlicer", "-m", "light_the_torch", "install",
         f"torch>={pytorch_install.MINIMUM_TORCH_VERSION}", "--constraint", "/c.txt"]]
    assert "CUDA build" in plan.description() and "numpy" in plan.description()


def test_install_runs_in_the_background_streams_its_output_and_cancels():
    """Issue 19, defect 4: the install ran as a blocking subprocess.run (up to an hour) on the GUI
    thread. Now it starts at once, its output lines arrive while it runs, and Cancel stops it
    without waiting."""
    plan = pytorch_install.InstallPlan("light-the-torch", [
        _python("print('Collecting light-the-torch', flush=True)"),
        _python("import time; print('Downloading torch-2.5.1 (10%)', flush=True); time.sleep(60)")])
    start = time.perf_counter()
    task = pytorch_install.InstallTask(plan).start()
    assert time.perf_counter() - start < 0.5
    assert _wait_until(lambda: "Downloading torch" in task.poll().line)
    status = task.poll()
    assert status.state == pytorch_install.RUNNING and (status.step, status.steps) == (2, 2)
    assert "Collecting light-the-torch" in task.lines
    start = time.perf_counter()
    task.cancel()
    assert time.perf_counter() - start < 0.3
    assert task.poll().state == pytorch_install.CANCELLED
    assert task.wait_stopped(10) and task.process.poll() is not None

    failing = pytorch_install.InstallTask(pytorch_install.InstallPlan("light-the-torch", [
        _python("import sys; print('Collecting torch'); print('ERROR: No space left', file=sys.stderr); sys.exit(1)"),
        _python("raise SystemExit('never run')")])).start()
    assert _wait_until(lambda: failing.poll().state != pytorch_install.RUNNING)
    status = failing.poll()
    assert status.state == pytorch_install.FAILED and status.step == 1
    assert status.error.endswith("failed: ERROR: No space left") and "\n" not in status.error


def test_an_old_torch_is_found_without_importing_it_and_an_upgrade_is_offered(monkeypatch, tmp_path):
    """Issue 19, defect 5: a torch older than the module needs (left by another extension) failed
    only when a run started. Its version is read from the package metadata (nothing imported)."""
    code = ("import sys; from AttentionUNetSegmentLib.scene import pytorch_install as p; "
            "print(p.torch_version_here(), p.torch_problem(), 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": processes.lib_parent_dir()}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == [metadata.version("torch"), "None", "False"]
    monkeypatch.setattr(pytorch_install.metadata, "version", lambda name: "1.13.1+cu117")
    assert pytorch_install.torch_problem() == "old"
    question = pytorch_install.install_question("old", pytorch_install.install_plan(python_executable="/py"))
    assert "1.13.1" in question and f">= {pytorch_install.MINIMUM_TORCH_VERSION}" in question
    monkeypatch.setattr(pytorch_install, "torch_found_here", lambda: False)
    assert pytorch_install.torch_problem() == "missing"
    assert pytorch_install.version_tuple("2.1.0a0+git") == (2, 1, 0)


def test_minimum_torch_version_is_the_package_requirement():
    pyproject = (Path(processes.lib_parent_dir()).parent / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"torch>={pytorch_install.MINIMUM_TORCH_VERSION}"' in pyproject


class _Dialogs:
    def __init__(self, install=True, restart=False):
        self.answers = {"install": install, "restart": restart}
        self.asked, self.restarted = [], False

    def ask_install(self, question):
        self.asked.append(("install", question))
        return self.answers["install"]

    def ask_restart(self):
        self.asked.append(("restart", ""))
        return self.answers["restart"]

    def restart(self):
        self.restarted = True


def test_offer_and_finish_flows(tmp_path, monkeypatch):
    dialogs = _Dialogs()
    offer = pytorch_install.offer_install(dialogs.ask_install, str(tmp_path))
    assert (offer.ready, offer.task, offer.error) == (True, None, "") and dialogs.asked == []
    monkeypatch.setattr(pytorch_install, "torch_problem", lambda: "missing")
    monkeypatch.setattr(processes, "python_executable", lambda: sys.executable)
    declined = _Dialogs(install=False)
    offer = pytorch_install.offer_install(declined.ask_install, str(tmp_path))
    assert not offer.ready and offer.task is None and offer.error.startswith("PyTorch is required")
    assert "light-the-torch" in declined.asked[0][1]
    monkeypatch.setattr(pytorch_install, "install_plan", lambda **kwargs: pytorch_install.InstallPlan(
        "light-the-torch", [_python("print('Successfully installed torch')")]))
    offer = pytorch_install.offer_install(dialogs.ask_install, str(tmp_path))
    assert not offer.ready and offer.task is not None and offer.error == ""
    assert _wait_until(lambda: offer.task.poll().state != pytorch_install.RUNNING)
    # Installed but still not found: one line, no restart offered.
    assert pytorch_install.finish_install(offer.task, dialogs.ask_restart, dialogs.restart) == \
        (False, "PyTorch was installed but cannot be found: restart Slicer and press Segment again.")
    monkeypatch.setattr(pytorch_install, "torch_problem", lambda: "old")      # the upgrade did not take
    monkeypatch.setattr(pytorch_install, "torch_version_here", lambda: "2.0.1")
    assert pytorch_install.finish_install(offer.task, dialogs.ask_restart, dialogs.restart)[1].startswith(
        "PyTorch is still 2.0.1 (older than 2.1): restart Slicer")
    monkeypatch.setattr(pytorch_install, "torch_problem", lambda: None)
    assert pytorch_install.finish_install(offer.task, dialogs.ask_restart, dialogs.restart) == (True, "")
    restarting = _Dialogs(restart=True)
    assert pytorch_install.finish_install(offer.task, restarting.ask_restart, restarting.restart) == (False, "")
    assert restarting.restarted


def test_install_flow_runs_the_waiting_run_once_installed(tmp_path, monkeypatch):
    """InstallFlow (the module's side): one install at a time, the newest run waits for it, its
    progress while it runs, the restart offered once it has ended, then the run; Cancel forgets both."""
    monkeypatch.setattr(processes, "python_executable", lambda: sys.executable)
    monkeypatch.setattr(pytorch_install, "torch_problem", lambda: "missing")
    monkeypatch.setattr(pytorch_install, "install_plan", lambda **kwargs: pytorch_install.InstallPlan(
        "light-the-torch", [_python("import time; print('Collecting torch', flush=True); time.sleep(0.5)")]))
    dialogs, runs = _Dialogs(), []
    flow = pytorch_install.InstallFlow(dialogs.ask_install, lambda question: dialogs.ask_restart(), dialogs.restart)
    assert flow.poll() is None and not flow.cancel()
    offer = flow.offer(lambda: runs.append("first"), str(tmp_path))
    assert offer.task is flow.task and flow.running and len(dialogs.asked) == 1
    again = flow.offer(lambda: runs.append("second"), str(tmp_path))    # a click meanwhile: no second install
    assert (again.ready, again.task, again.error) == (False, None, "") and len(dialogs.asked) == 1
    assert _wait_until(lambda: "Collecting torch" in flow.poll().status)
    assert flow.poll().running and flow.poll().status.startswith("Installing PyTorch, step 1/1: ")
    monkeypatch.setattr(pytorch_install, "torch_problem", lambda: None)   # what the installer did
    assert _wait_until(lambda: flow.task.poll().state != pytorch_install.RUNNING)
    ended = flow.poll()
    assert not ended.running and not ended.error and not flow.running and flow.poll() is None
    done = flow.finish(ended)
    assert done.go_on and done.error == "" and dialogs.asked[-1][0] == "restart" and not dialogs.restarted
    done.then()
    assert runs == ["second"]

    offer = flow.offer(lambda: runs.append("third"), str(tmp_path))     # ready now: nothing to wait for
    assert offer.ready and not flow.running
    monkeypatch.setattr(pytorch_install, "torch_problem", lambda: "missing")
    flow.offer(lambda: runs.append("fourth"), str(tmp_path))
    task = flow.task
    assert flow.cancel() and not flow.running and flow.then is None and flow.poll() is None
    assert task.poll().state == pytorch_install.CANCELLED and task.wait_stopped(10)
    assert runs == ["second"]

    monkeypatch.setattr(pytorch_install, "install_plan", lambda **kwargs: pytorch_install.InstallPlan(
        "light-the-torch", [_python("import sys; print('No matching distribution'); sys.exit(1)")]))
    flow.offer(lambda: runs.append("fifth"), str(tmp_path))
    assert _wait_until(lambda: flow.task.poll().state != pytorch_install.RUNNING)
    failed = flow.finish(flow.poll())                                   # no restart offered after a failure
    assert failed.error.startswith("Installing PyTorch failed: ") and "No matching distribution" in failed.details
    assert not failed.go_on and dialogs.asked[-1][0] == "install" and runs == ["second"]
