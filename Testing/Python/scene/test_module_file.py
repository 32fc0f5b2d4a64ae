"""The module file outside Slicer (Qt side faked, see module_fakes.py; scene, markups, VTK
observers, jobs and processes real): the self-test, in this process and in a Python that cannot
import torch; the widget's flows; cleanup (the click mode: test_module_click_mode.py). It cannot show that real Qt widgets behave like the fakes: docs/slicer.md
lists what to check by hand in Slicer."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import types
import unittest
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from AttentionUNetSegmentLib.scene import device_probe, processes  # noqa: E402
from AttentionUNetSegmentLib.scene.job import CANCELLED  # noqa: E402
from AttentionUNetSegmentLib.scene.roles import MAX_GATE, NO_OVERLAY  # noqa: E402
from AttentionUNetSegmentLib.scene.selftest import SKIP_MESSAGE  # noqa: E402
from module_fakes import UI_FILE, FakeTimer, load_module_file  # noqa: E402
from torch_blocker import write_torch_blocker  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.fixture
def module_file(mrml, tmp_path):
    with contextlib.ExitStack() as stack:
        yield load_module_file(mrml, str(tmp_path), stack)


@pytest.fixture
def widget(module_file, mrml, small_ct, monkeypatch):
    monkeypatch.setattr(device_probe, "DeviceProbe", lambda *a: types.SimpleNamespace(
        start=lambda: types.SimpleNamespace(poll=lambda: {"torch": "2.x", "cuda": ["NVIDIA Test GPU"], "mps": False},
                                            stop=lambda: None)))
    ct = mrml.add_ct(small_ct)
    mrml.composite.SetBackgroundVolumeID(ct.GetID())
    widget = module_file.AttentionUNetSegmentWidget(parent=types.SimpleNamespace(isEntered=True))
    widget.setup()
    widget.ct = ct
    yield widget
    widget.cleanup()


def _drive(widget, timeout=120):
    """What the module's QTimer does: call onJobTimer until the job is over."""
    deadline = time.perf_counter() + timeout
    while widget._job is not None:
        widget.onJobTimer()
        time.sleep(0.05)
        assert time.perf_counter() < deadline, "the job did not finish"


def _use_model(widget, path):
    ui = widget.ui
    ui.modelComboBox.setCurrentIndex(ui.modelComboBox.findData(widget.CUSTOM_MODEL))
    ui.modelPathLineEdit.currentPath = str(path)
    ui.modelPathLineEdit.emit("currentPathChanged(QString)", str(path))


def test_module_self_test_runs_end_to_end(module_file, mrml):
    """The self-test Slicer runs (synthetic CT segmented in a background process, overlays, re-use;
    cancel within 2 s leaving scene and disk clean; a broken model file gives one line)."""
    assert Path(module_file.resourcesDirectory()) == UI_FILE.parents[1]
    case = module_file.AttentionUNetSegmentTest("runTest")
    result = unittest.TestResult()
    case.run(result)
    assert result.wasSuccessful(), "\n".join(text for _, text in result.failures + result.errors)
    assert module_file.fakes.messages[-1] == "Test passed"
    # With PyTorch the whole module runs, through its widget (issue 19: no empty pass in the build).
    assert any("through the module's widget" in message for message in module_file.fakes.messages)


_CHILD = """
import contextlib, json, sys, tempfile, unittest
from mrml_helpers import Mrml
from module_fakes import load_module_file
with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as temporary:
    module = load_module_file(Mrml(), temporary, stack)
    result = unittest.TestResult()
    module.AttentionUNetSegmentTest("runTest").run(result)
    print(json.dumps({"ok": result.wasSuccessful(), "problems": [t for _, t in result.failures + result.errors],
                      "messages": module.fakes.messages, "torch_loaded": "torch" in sys.modules}))
"""


def _self_test_in_child(tmp_path, block: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(write_torch_blocker(tmp_path / "blocker")), str(HERE),
                                          processes.lib_parent_dir()]), block: "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_self_test_on_a_slicer_without_pytorch_skips_with_a_clear_message(tmp_path):
    """Stock Slicer ships no torch (in Slicer nor in PythonSlicer): the self-test must pass, test what
    needs no network (the scene part), and say clearly that it skipped the network part (issue 19),
    not fail with ModuleNotFoundError."""
    report = _self_test_in_child(tmp_path, "BLOCK_TORCH")
    assert report["ok"], report["problems"]
    assert report["messages"][-1] == SKIP_MESSAGE and "network part skipped" in SKIP_MESSAGE
    assert any("without the network" in message for message in report["messages"])
    assert not report["torch_loaded"]


def test_self_test_never_imports_torch_into_slicers_process(tmp_path):
    """Torch importable by the job's Python but not by the process running the self-test (Slicer's):
    the whole self-test passes, its tiny model written by a child."""
    report = _self_test_in_child(tmp_path, "BLOCK_TORCH_HERE_ONLY")
    assert report["ok"], report["problems"]
    assert report["messages"][-1] == "Test passed" and not report["torch_loaded"]


def test_widget_flows_segment_cancel_errors_overlays(widget, module_file, mrml, tiny_model_path, tmp_path,
                                                     empty_model_path):
    ui, p, ct = widget.ui, widget._parameterNode, widget.ct
    assert p.inputVolume is ct                                    # the volume shown in the slice views
    widget.onProbeTimer()
    assert ui.deviceComboBox.itemTexts() == ["Auto: GPU (NVIDIA Test GPU)", "CPU", "GPU: NVIDIA Test GPU"]
    assert ui.segmentButton.text == "Segment" and ui.segmentButton.enabled

    _use_model(widget, tiny_model_path)
    assert ui.modelPathLineEdit.visible and ui.modelFolderButton.visible
    assert (p.model, p.modelPath) == (widget.CUSTOM_MODEL, str(tiny_model_path))
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cpu"))
    assert p.device == "cpu"
    p.overlap = 0.0

    widget.onSegmentButton()
    assert ui.segmentButton.text == "Cancel" and ui.progressBar.visible and not ui.inputVolumeSelector.enabled
    assert ui.modelPathLineEdit.history == [str(tiny_model_path)]          # the model picker remembers it
    _drive(widget)
    assert not module_file.fakes.errors, module_file.fakes.errors
    assert ui.segmentButton.text == "Segment" and not ui.progressBar.visible
    assert "Pancreas:" in ui.resultLabel.text and "mL" in ui.resultLabel.text and "cpu" in ui.resultLabel.text
    segmentation = p.outputSegmentation
    assert segmentation is not None and segmentation.GetSegmentation().GetSegment("Pancreas") is not None
    overlays = widget.logic.overlay_nodes_for(ct)
    assert ui.gateComboBox.itemTexts() == ["Maximum over gates", "Gate 2", "Gate 3", "Gate 4", "None (hide overlay)"]
    assert mrml.composite.GetForegroundVolumeID() == overlays[MAX_GATE].GetID()
    # The overlays are volumes too, but the input selector does not offer them.
    assert sorted(ui.inputVolumeSelector.proxy.hiddenNodeIDs) == sorted(n.GetID() for n in overlays.values())

    ids = mrml.node_ids()
    ui.gateComboBox.setCurrentIndex(ui.gateComboBox.findData("gate3"))
    assert p.gate == "gate3" and mrml.composite.GetForegroundVolumeID() == overlays["gate3"].GetID()
    widget.onOpacityChanged(0.3)
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(0.3)
    ui.gateComboBox.setCurrentIndex(ui.gateComboBox.findData(NO_OVERLAY))
    assert not mrml.composite.GetForegroundVolumeID()
    assert mrml.node_ids() == ids

    # Cancel right after pressing Segment: the scene is as it was, no files are left.
    widget.onSegmentButton()
    job = widget._job
    widget.onSegmentButton()
    assert widget._job is None and job.poll().state == CANCELLED
    assert job.wait_stopped(timeout=10) and not job.work_dir.exists()
    assert ui.statusLabel.text.startswith("Cancelled") and ui.segmentButton.text == "Segment"
    assert mrml.node_ids() == ids



def test_widget_errors_are_one_line_and_leave_the_scene_alone(widget, module_file, mrml, tiny_model_path, tmp_path,
                                                              empty_model_path):
    """Errors are one line in the module (and a dialog with the log as details), never a traceback."""
    ui, p, ct = widget.ui, widget._parameterNode, widget.ct
    _use_model(widget, tiny_model_path)
    p.device, p.overlap = "cpu", 0.0
    widget.onSegmentButton()
    _drive(widget)
    overlays = widget.logic.overlay_nodes_for(ct)
    ids = mrml.node_ids()
    # (Set directly, not with monkeypatch: the module fakes restore the real function at teardown.)
    processes.python_executable = lambda: shutil.which("false")
    widget.onSegmentButton()
    _drive(widget)
    message, options = module_file.fakes.errors[-1]
    assert message == "the segmentation process failed (exit code 1)" and ui.statusLabel.text == message

    def missing():
        raise processes.PythonSlicerNotFound("PythonSlicer was not found (not on PATH, not in /x/bin): ...")

    processes.python_executable = missing
    widget.onSegmentButton()
    assert widget._job is None and ui.statusLabel.text.startswith("PythonSlicer was not found")
    processes.python_executable = lambda: sys.executable
    p.modelPath = str(tmp_path / "missing.pt")
    widget.onSegmentButton()
    assert "missing.pt: does not exist" in ui.statusLabel.text and widget._job is None
    p.inputVolume = overlays["gate2"]
    widget.onSegmentButton()
    assert "is an attention overlay made by this module, not a CT" in ui.statusLabel.text and widget._job is None
    p.inputVolume = None
    assert not ui.segmentButton.enabled and not ui.clickToSegmentButton.enabled
    widget.startSegmentation()
    assert "no input volume selected" in ui.statusLabel.text
    p.inputVolume = ct
    assert mrml.node_ids() == ids

    # A model that finds nothing: the result is shown, and the empty segment is said in words.
    _use_model(widget, empty_model_path)
    widget.onSegmentButton()
    _drive(widget)
    assert "Pancreas: 0.0 mL" in ui.resultLabel.text
    assert "Nothing was found for Pancreas: the segment is empty" in ui.resultLabel.text


def test_folder_button_and_cleanup_stop_timers_and_processes(widget, module_file, tmp_path):
    ui = widget.ui
    ui.modelComboBox.setCurrentIndex(ui.modelComboBox.findData(widget.CUSTOM_MODEL))
    module_file.fakes.folder_answer = str(tmp_path)
    ui.modelFolderButton.emit("clicked(bool)", False)
    assert ui.modelPathLineEdit.currentPath == str(tmp_path)
    module_file.fakes.folder_answer = ""                               # dialog cancelled: path kept
    ui.modelFolderButton.emit("clicked(bool)", False)
    assert ui.modelPathLineEdit.currentPath == str(tmp_path)

    stopped = []
    widget._deviceProbe = types.SimpleNamespace(poll=lambda: None, stop=lambda: stopped.append(True))
    assert widget._probeTimer.active                                  # still asking for the devices
    widget.onProbeTimer()
    assert widget._probeTimer.active
    widget.cleanup()                                                  # Reload, or Slicer closing
    assert not widget._probeTimer.active and not widget._jobTimer.active and stopped == [True]
    assert all(not timer.active for timer in FakeTimer.instances)


def test_output_segmentation_follows_the_input_ct(widget, mrml, small_ct):
    """Issue 19, defect 1 (the module's half): switching the input CT shows that CT's own result
    (none yet for a new CT) instead of keeping the previous CT's segmentation as the output."""
    from mrml_helpers import output_like

    p, ct = widget._parameterNode, widget.ct
    applied = widget.logic.apply_result(ct, output_like(small_ct))
    p.outputSegmentation = applied.segmentation_node          # as the module does after a run
    ct2 = mrml.add_ct(small_ct, name="CT 2")
    p.inputVolume = ct2
    assert p.outputSegmentation is None
    p.inputVolume = ct
    assert p.outputSegmentation is applied.segmentation_node


def _offered_inputs(widget, mrml) -> list[str]:
    """The volumes the Input CT selector lists: scalar volumes whose ID the proxy does not hide."""
    from AttentionUNetSegmentLib.scene.roles import collection_items

    hidden = set(widget.ui.inputVolumeSelector.proxy.hiddenNodeIDs)
    return [node.GetName() for node in collection_items(mrml.scene.GetNodesByClass("vtkMRMLScalarVolumeNode"))
            if node.GetID() not in hidden]


# Before the Close Scene test on purpose: run right after it (whose scene.Clear() emulates Close
# Scene), this test's apply_result logged "vtkSubjectHierarchyItem::DataNodeCache inconsistency"
# from slicer-core's subject hierarchy, while it passes alone and in any other order; its cause
# was not found (suspected: stale cache entries after Clear() without Slicer's subject hierarchy
# logic, meeting a recycled address). To be checked in a real Slicer (docs/slicer.md, checklist).
def test_overlays_made_outside_the_module_are_not_offered(widget, mrml, small_ct):
    """Issue 19, defect 10: overlays are recognised by their node attribute whenever they appear
    (a script's run, a scene loaded), not only by the IDs the module noted after its own runs."""
    from mrml_helpers import output_like

    ct2 = mrml.add_ct(small_ct, name="CT 2")
    widget.logic.apply_result(ct2, output_like(small_ct))        # a script, not the module's button
    assert _offered_inputs(widget, mrml) == ["CT", "CT 2"]


def test_new_cts_are_offered_after_close_scene(widget, mrml, small_ct):
    """Issue 19, defect 2: node IDs restart after Close Scene; CTs loaded afterwards must not be
    hidden because they got the IDs the previous scene's overlays had."""
    from mrml_helpers import output_like

    widget.logic.apply_result(widget.ct, output_like(small_ct))
    widget._hideOverlaysFromInputSelector()                      # as after the module's own run
    assert _offered_inputs(widget, mrml) == ["CT"]
    mrml.scene.Clear(0)                                          # File > Close Scene
    for name in ("CT A", "CT B", "CT C"):
        mrml.add_ct(small_ct, name=name, study=False)
    assert _offered_inputs(widget, mrml) == ["CT A", "CT B", "CT C"]


_LOAD_ONLY = """
import contextlib, json, sys, tempfile, types
import slicer
import module_fakes
with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as temporary:
    module_fakes.load_module_file(types.SimpleNamespace(scene=slicer.vtkMRMLScene(), segmentations_logic=None),
                                  temporary, stack)
    print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "SimpleITK")))
"""


def test_slicer_start_up_does_not_load_simpleitk(tmp_path):
    """Issue 19, defect 7 (at run time): importing the module file, as Slicer does at start-up, loads
    no SimpleITK. (numpy cannot be checked this way: slicer-core's `slicer` loads it itself; the
    import rule checks that the module file's imports do not.)"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), processes.lib_parent_dir()])}
    out = subprocess.run([sys.executable, "-c", _LOAD_ONLY], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_pressing_segment_without_pytorch_installs_it_in_the_background(widget, module_file, tiny_model_path,
                                                                       monkeypatch):
    """Issue 19, defect 4 (the module's half): the install ran on the GUI thread with a wait cursor.
    Now Segment starts it and returns; the installer's lines show in the status line, the button
    cancels it, and once it has finished (restart declined) the segmentation starts by itself."""
    from AttentionUNetSegmentLib.scene import pytorch_install

    ui, p = widget.ui, widget._parameterNode
    _use_model(widget, tiny_model_path)
    p.device, p.overlap = "cpu", 0.0
    problem = ["missing"]
    monkeypatch.setattr(pytorch_install, "torch_problem", lambda: problem[0])
    slow = [sys.executable, "-c", "import time; print('Downloading torch (50%)', flush=True); time.sleep(60)"]
    monkeypatch.setattr(pytorch_install, "install_plan", lambda **kwargs: pytorch_install.InstallPlan(
        "light-the-torch", [slow]))
    start = time.perf_counter()
    widget.onSegmentButton()
    assert time.perf_counter() - start < 1.0
    assert "Install it now" in module_file.fakes.confirmations[-1]
    assert widget._job is None and ui.segmentButton.text == "Cancel" and ui.progressBar.visible
    deadline = time.perf_counter() + 20
    while "Downloading torch (50%)" not in ui.statusLabel.text and time.perf_counter() < deadline:
        widget.onInstallTimer()
        time.sleep(0.05)
    assert "Downloading torch (50%)" in ui.statusLabel.text
    task = widget._installFlow.task
    asked = len(module_file.fakes.confirmations)
    widget.startSegmentation()                                   # e.g. a click while installing
    assert widget._installFlow.task is task and len(module_file.fakes.confirmations) == asked
    widget.onSegmentButton()                                     # Cancel
    assert widget._installFlow.task is None and task.poll().state == pytorch_install.CANCELLED
    assert ui.segmentButton.text == "Segment" and not ui.progressBar.visible and task.wait_stopped(10)

    quick = [sys.executable, "-c", "print('Successfully installed torch-2.5.1')"]
    monkeypatch.setattr(pytorch_install, "install_plan", lambda **kwargs: pytorch_install.InstallPlan(
        "light-the-torch", [quick]))
    widget.onSegmentButton()
    problem[0] = None                                            # what the installer did
    deadline = time.perf_counter() + 20
    while widget._installFlow.task is not None and time.perf_counter() < deadline:
        widget.onInstallTimer()
        time.sleep(0.05)
    assert widget._job is not None, module_file.fakes.errors     # restart declined: segmenting now
    _drive(widget)
    assert "Pancreas:" in ui.resultLabel.text
