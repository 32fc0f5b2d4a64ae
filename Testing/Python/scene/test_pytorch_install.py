"""PyTorch checked without importing it, and installed by the route that picks the CUDA build for
the GPU found (SlicerPyTorch's PyTorchUtils when present, else light-the-torch), restart offered."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from importlib import metadata

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


def test_install_routes(tmp_path):
    extension = pytorch_install.install_plan(True, python_executable="/slicer/PythonSlicer")
    assert extension.commands == [] and "PyTorch extension" in extension.description()
    plan = pytorch_install.install_plan(False, python_executable="/slicer/PythonSlicer", constraints_path="/c.txt")
    assert plan.commands == [
        ["/slicer/PythonSlicer", "-m", "pip", "install", "--disable-pip-version-check", "light-the-torch>=0.7",
         "--constraint", "/c.txt"],
        ["/slicer/PythonSlicer", "-m", "light_the_torch", "install", "torch", "--constraint", "/c.txt"]]
    assert "CUDA build" in plan.description()
    calls = []

    def run(command, **kwargs):
        calls.append((command, kwargs))
        failing = command[2] == "light_the_torch"
        return subprocess.CompletedProcess(command, 1 if failing else 0, "", "Collecting torch\nERROR: No space left")

    with pytest.raises(RuntimeError, match="light_the_torch install torch failed: ERROR: No space left"):
        pytorch_install.run_install_commands(plan, run=run)
    assert [c for c, _ in calls] == plan.commands
    assert all(k["env"]["PYTHONIOENCODING"] == "utf-8" and k["stdin"] == subprocess.DEVNULL for _, k in calls)


class _Dialogs:
    def __init__(self, install=True, restart=False):
        self.answers = {"install": install, "restart": restart}
        self.asked, self.restarted = [], False

    def ask_install(self, how):
        self.asked.append(("install", how))
        return self.answers["install"]

    def ask_restart(self):
        self.asked.append(("restart", ""))
        return self.answers["restart"]

    def restart(self):
        self.restarted = True


def _fake_pytorch_utils(installed: list, result="torch"):
    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
            installed.append(askConfirmation)
            return result

    return types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic)


def test_ensure_pytorch_flows(tmp_path, monkeypatch):
    dialogs = _Dialogs()
    assert pytorch_install.ensure_pytorch(dialogs.ask_install, dialogs.ask_restart, dialogs.restart,
                                          str(tmp_path)) == (True, "")
    assert dialogs.asked == []                                   # present: nobody is asked anything
    present = iter([False, True])                                # missing, then found after the install
    monkeypatch.setattr(pytorch_install, "torch_found_here", lambda: next(present))
    monkeypatch.setattr(processes, "python_executable", lambda: sys.executable)
    installed = []
    dialogs = _Dialogs(install=True, restart=True)
    assert pytorch_install.ensure_pytorch(dialogs.ask_install, dialogs.ask_restart, dialogs.restart, str(tmp_path),
                                          _fake_pytorch_utils(installed)) == (False, "")
    assert installed == [False] and dialogs.restarted            # the module asked; the extension did not
    assert dialogs.asked[0][0] == "install" and "PyTorch extension" in dialogs.asked[0][1]

    monkeypatch.setattr(pytorch_install, "torch_found_here", lambda: False)
    declined = _Dialogs(install=False)
    ready, error = pytorch_install.ensure_pytorch(declined.ask_install, declined.ask_restart, declined.restart,
                                                  str(tmp_path), None)
    assert not ready and error.startswith("PyTorch is required") and "light-the-torch" in declined.asked[0][1]
    ready, error = pytorch_install.ensure_pytorch(dialogs.ask_install, dialogs.ask_restart, dialogs.restart,
                                                  str(tmp_path), _fake_pytorch_utils([], result=None))
    assert not ready and error == "Installing PyTorch failed: the PyTorch extension did not install PyTorch"
    monkeypatch.setattr(pytorch_install, "run_install_commands", lambda plan: None)
    ready, error = pytorch_install.ensure_pytorch(dialogs.ask_install, dialogs.ask_restart, dialogs.restart,
                                                  str(tmp_path), None)
    assert not ready and "cannot be found: restart Slicer" in error
