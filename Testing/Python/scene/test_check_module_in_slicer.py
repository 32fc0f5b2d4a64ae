"""The maintainer's script for a real Slicer (Testing/Slicer/check_module_in_slicer.py), run here
against the module file with the Qt stand-ins: it must work end to end, so that what a maintainer
runs in Slicer tests the module and not the script. (It cannot show that real Qt behaves like the
stand-ins: that is what the script is for.)"""

from __future__ import annotations

import contextlib
import importlib.util
import types
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from AttentionUNetSegmentLib.scene import device_probe  # noqa: E402
from module_fakes import load_module_file, run_pending_single_shots  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "Slicer" / "check_module_in_slicer.py"


def test_the_maintainer_script_passes_against_the_stand_ins(mrml, tmp_path, tiny_model_path, empty_model_path,
                                                           monkeypatch):
    monkeypatch.setattr(device_probe, "DeviceProbe", lambda *a: types.SimpleNamespace(
        start=lambda: types.SimpleNamespace(poll=lambda: {"torch": "2.x", "cuda": [], "mps": False},
                                            stop=lambda: None)))
    spec = importlib.util.spec_from_file_location("check_module_in_slicer", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        load_module_file(mrml, str(tmp_path), stack)
        widget = slicer.util.getModuleWidget(script.MODULE)
        args = script.parse(["--model", str(tiny_model_path), "--other-model", str(empty_model_path)])
        check = script.run_checks(args, widget, run_pending_single_shots, log=lines.append)
    print("\n".join(lines))
    assert check.passed, "\n".join(lines)
    names = [name for name, _, _ in check.results]
    for expected in ("Segment shows a result", "click mode: a click gives the segment, Done ends the worker",
                     "Cancel returns within a second", "Cancel ends the process tree and deletes the work folder",
                     "after Close Scene, new CTs are offered as input", "one result per CT",
                     "no segment of the earlier model is left stale"):
        assert expected in names, names
    assert lines[-1].startswith(f"{len(names)}/{len(names)} checks passed") or any(
        line.startswith(f"{len(names)}/{len(names)} checks passed") for line in lines)
