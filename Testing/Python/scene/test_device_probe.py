"""The device probe asks a hidden child Python for PyTorch and GPUs; the menu labels follow."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytest.importorskip("slicer")

from AttentionUNetSegmentLib.scene import device_probe, processes  # noqa: E402


def test_device_probe_reports_torch_without_importing_it_here():
    probe = device_probe.DeviceProbe(sys.executable).start()
    deadline = time.perf_counter() + 60
    while probe.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.05)
    info = probe.poll()
    assert info["torch"] and isinstance(info["cuda"], list) and isinstance(info["mps"], bool)
    probe.stop()                                   # ended already: nothing to do, no error


def test_probe_starts_hidden_on_windows_and_can_be_stopped(monkeypatch):
    """The probe starts when the module opens: without the hidden-window options a console window
    flashes up on Windows each time."""
    monkeypatch.setattr(processes, "is_windows", lambda: True)
    monkeypatch.setattr(processes, "hidden_window_options",
                        lambda: {"creationflags": 0x08000000, "startupinfo": "hidden"})
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kwargs: started.append((args, kwargs)) or
                        type("P", (), {"poll": lambda self: 0, "stdout": None})())
    probe = device_probe.DeviceProbe("C:/Slicer/bin/PythonSlicer.exe").start()
    (args, kwargs), = started
    assert args == ["C:/Slicer/bin/PythonSlicer.exe", "-c", device_probe.PROBE_CODE]
    assert kwargs["creationflags"] == 0x08000000 and kwargs["startupinfo"] == "hidden"
    assert kwargs["env"]["PYTHONIOENCODING"] == "utf-8"
    assert probe.poll()["error"] == "probe failed"   # no output: a clear "failed", not a crash


def test_device_menu_labels():
    assert device_probe.device_choices(None) == [("Auto (checking for a GPU...)", "auto"), ("CPU", "cpu"),
                                                 ("GPU (CUDA)", "cuda")]
    assert device_probe.device_choices({"torch": "2.5", "cuda": ["NVIDIA H200"], "mps": False}) == [
        ("Auto: GPU (NVIDIA H200)", "auto"), ("CPU", "cpu"), ("GPU: NVIDIA H200", "cuda")]
    assert device_probe.device_choices({"torch": "2.5", "cuda": [], "mps": True})[::2] == [
        ("Auto: Apple GPU (MPS)", "auto"), ("Apple GPU (MPS)", "mps")]
    assert device_probe.device_choices({"torch": None, "cuda": [], "mps": False})[::2] == [
        ("Auto: CPU (no GPU found)", "auto"), ("GPU (CUDA; none found)", "cuda")]
