"""What the module's self-test needs besides the scene, without torch in Slicer's process.

Stock Slicer ships no PyTorch, and the self-test runs inside Slicer (Reload and Test, ctest):
it always tests the scene part (a made-up result put into the scene, no network), asks the job's
Python whether torch is there (a child process), says clearly that it skipped the network part if
not, and otherwise builds its tiny model in that child Python too and runs the whole module on a
tiny CT: the logic's background job, cancel, a broken model, and the module's widget as a user
drives it (so the extension build's test is no empty pass).
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from ..files.resources import default_model_path
from . import processes
from .job import CANCELLED, FAILED, RUNNING, SUCCEEDED
from .pytorch_install import torch_found_in
from .roles import MAX_GATE
from .volumes import image_to_volume_node

logger = logging.getLogger(__name__)

SKIP_MESSAGE = ("AttentionUNetSegment self-test: network part skipped: PyTorch is not installed in Slicer's "
                "Python (install the PyTorch extension, or press Segment once and accept the installation); "
                "the scene part, without the network, passed")

_WRITE_TINY_MODEL = """
import sys
from AttentionUNetSegmentLib.files.modelfile import save_model, tiny_test_model
model, spec = tiny_test_model(seed=0)
save_model(sys.argv[1], model, spec)
"""


def synthetic_ct() -> sitk.Image:
    """A small CT-like volume in HU (44 x 44 x 16 voxels of 4 mm): a soft-tissue ball in air with
    a strip of bone. Small on purpose: the self-test stays fast on a CPU."""
    z, y, x = np.mgrid[0:16, 0:44, 0:44]
    array = np.where((x - 22) ** 2 + (y - 22) ** 2 + (z - 8) ** 2 < 7 ** 2, 40, -1000).astype(np.int16)
    array[:, :, :2] = 700
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((4.0, 4.0, 4.0))
    return image


def torch_available_for_jobs(python_executable: str | None = None) -> bool:
    return torch_found_in(python_executable)


def write_tiny_model(path: str, python_executable: str | None = None, timeout_s: float = 300.0) -> str:
    """Write the tiny test model to `path` from a child Python (which imports torch, not us)."""
    python = python_executable or processes.python_executable()
    result = subprocess.run([python, "-c", _WRITE_TINY_MODEL, path], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, encoding="utf-8", errors="replace",
                            timeout=timeout_s, env=processes.child_environment(None, processes.lib_parent_dir()),
                            **processes.hidden_window_options())
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"{path}: the tiny test model could not be written: "
                           f"{lines[-1] if lines else f'exit code {result.returncode}'}")
    return path


# ----------------------------------------------------------------------------------------------
# The module's self-test scenarios. `case` is the unittest.TestCase (its assert methods are used),
# `logic` the module's logic on the scene, `wait` a function that lets Slicer process events while
# a job runs and returns its final status (`wait_for`).
# ----------------------------------------------------------------------------------------------

def add_synthetic_ct(scene):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Phantom CT")
    image_to_volume_node(synthetic_ct(), volume)
    volume.CreateDefaultDisplayNodes()
    return volume


def _node_ids(scene) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def segment_end_to_end(case, logic, wait, model_path: str) -> None:
    """Phantom -> background job -> segment with terminology and colour, overlays, re-use on re-run."""
    volume = add_synthetic_ct(logic.scene)
    job = logic.create_job(volume, model_path=model_path, device="cpu", overlap=0.0).start()
    status = wait(job)
    case.assertEqual(status.state, SUCCEEDED, status.error)
    applied = logic.apply_result(volume, job.result())
    job.cleanup()
    case.assertFalse(job.work_dir.exists())
    segment = applied.segmentation_node.GetSegmentation().GetSegment("Pancreas")
    case.assertIsNotNone(segment)
    terminology = vtk.reference("")
    segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    case.assertIn("15776009", str(terminology))
    np.testing.assert_allclose(segment.GetColor(), (249 / 255, 180 / 255, 111 / 255), atol=1e-6)
    case.assertEqual(sorted(applied.overlay_nodes), sorted(list(job.result().attention) + [MAX_GATE]))
    for node in applied.overlay_nodes.values():
        values = slicer.util.arrayFromVolume(node)
        case.assertTrue(0.0 <= float(values.min()) and float(values.max()) <= 1.0)
    shown = logic.show_overlay(volume, "gate3", 0.4)        # instant, no re-run
    for composite in logic.slice_composite_nodes():
        case.assertEqual(composite.GetForegroundVolumeID(), shown.GetID())
        case.assertAlmostEqual(composite.GetForegroundOpacity(), 0.4)
    count = logic.scene.GetNumberOfNodes()
    again = logic.apply_result(volume, job.result())      # a re-run re-uses every node
    case.assertIs(again.segmentation_node, applied.segmentation_node)
    case.assertEqual(logic.scene.GetNumberOfNodes(), count)


def cancel_leaves_scene_unchanged(case, logic, wait_for_progress, model_path: str) -> None:
    """Cancel while the network runs: within 2 s, process gone, no files, no nodes added."""
    volume = add_synthetic_ct(logic.scene)
    before = _node_ids(logic.scene)
    job = logic.create_job(volume, model_path=model_path, device="cpu", overlap=0.75).start()
    wait_for_progress(job)
    case.assertEqual(job.poll().state, RUNNING)
    start = time.perf_counter()
    job.cancel()
    case.assertLess(time.perf_counter() - start, 1.0)        # returns at once; the stopping goes on
    case.assertEqual(job.poll().state, CANCELLED)
    case.assertTrue(job.wait_stopped(10.0), "the process or the work folder outlived the cancel")
    case.assertIsNotNone(job.process.poll(), "the segmentation process still runs")
    case.assertFalse(job.work_dir.exists())
    case.assertRaises(RuntimeError, job.result)
    case.assertEqual(_node_ids(logic.scene), before)


def broken_model_gives_one_line(case, logic, wait, broken_path: str) -> None:
    with open(broken_path, "wb") as file:
        file.write(b"not a model" * 100)
    volume = add_synthetic_ct(logic.scene)
    count = logic.scene.GetNumberOfNodes()
    job = logic.create_job(volume, model_path=broken_path, device="cpu").start()
    status = wait(job)
    job.cleanup()
    case.assertEqual(status.state, FAILED)
    case.assertIn("broken.pt", status.error)
    case.assertNotIn("\n", status.error)
    case.assertNotIn("Traceback", status.error)
    case.assertFalse(job.work_dir.exists())
    case.assertEqual(logic.scene.GetNumberOfNodes(), count)


def scene_without_network(case, logic) -> None:
    """What needs no PyTorch: a made-up result (the CT's soft tissue as the segment, a ramp as the
    attention map) put into the scene; segment, overlays, display; a second CT gets its own result."""
    import numpy as np
    import SimpleITK as sitk

    from .results import SegmentationOutput, default_labels

    image = synthetic_ct()
    labels = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(image) == 40).astype(np.uint8))
    labels.CopyInformation(image)
    ramp = sitk.GetImageFromArray(np.linspace(0.0, 1.0, labels.GetNumberOfPixels(), dtype=np.float32)
                                  .reshape(sitk.GetArrayViewFromImage(labels).shape))
    ramp.CopyInformation(image)
    output = SegmentationOutput(labels, {"gate2": ramp}, default_labels(), {"device": "none"})
    first, second = add_synthetic_ct(logic.scene), add_synthetic_ct(logic.scene)
    applied = logic.apply_result(first, output)
    case.assertIsNotNone(applied.segmentation_node.GetSegmentation().GetSegment("Pancreas"))
    case.assertGreater(applied.volume_ml["Pancreas"], 0.0)
    case.assertEqual(sorted(applied.overlay_nodes), ["gate2", MAX_GATE])
    for composite in logic.slice_composite_nodes():
        case.assertEqual(composite.GetForegroundVolumeID(), applied.overlay_nodes[MAX_GATE].GetID())
    other = logic.apply_result(second, output, segmentation_node=applied.segmentation_node)
    case.assertIsNot(other.segmentation_node, applied.segmentation_node)       # one result per CT


def through_the_widget(case, widget, model_path: str, timeout_s: float = 300.0) -> None:
    """The whole module as a user drives it: input CT, a model file, Segment, the Result line; then
    a second CT, which gets its own result; the overlays are not offered as inputs."""
    scene = widget.logic.scene
    first, second = add_synthetic_ct(scene), add_synthetic_ct(scene)
    second.SetName("Phantom CT 2")
    p = widget._parameterNode
    p.model, p.modelPath, p.device, p.overlap = widget.CUSTOM_MODEL, model_path, "cpu", 0.0
    for volume in (first, second):
        p.inputVolume = volume
        widget.onSegmentButton()
        drive_widget(widget, timeout_s)
        case.assertIn("Pancreas:", widget.ui.resultLabel.text, widget.ui.statusLabel.text)
        case.assertIs(p.outputSegmentation, widget.logic.segmentation_node_for(volume))
    case.assertIsNot(widget.logic.segmentation_node_for(first), widget.logic.segmentation_node_for(second))
    hidden = set(widget.ui.inputVolumeSelector.sortFilterProxyModel().hiddenNodeIDs)
    overlays = [node.GetID() for node in widget.logic.overlay_nodes_for(first).values()]
    case.assertTrue(overlays and set(overlays) <= hidden, "attention overlays are offered as input CTs")


def drive_widget(widget, timeout_s: float = 300.0) -> None:
    """Let Slicer process events until the widget's job has ended; its timer's slot is also called
    here, where no event loop fires timers (stand-ins): polling twice is harmless."""
    start = time.perf_counter()
    while widget._job is not None:
        app = getattr(slicer, "app", None)
        if app is not None:
            app.processEvents()
        widget.onJobTimer()
        time.sleep(0.05)
        if time.perf_counter() - start > timeout_s:
            raise AssertionError(f"the module's segmentation did not finish in {timeout_s:g} s")


def click_mode_end_to_end(case, logic, model_path: str, timeout_s: float = 300.0) -> None:
    """The click mode with the bundled click model: an include click, an exclude click, Undo, Done;
    afterwards a point placed into the mode's node starts nothing (issue 19)."""
    from .interactive_mode import ClickMode

    volume = add_synthetic_ct(logic.scene)
    app_logic = slicer.app.applicationLogic()
    mode = ClickMode(logic, app_logic, work_root=slicer.app.temporaryPath)

    def answered(count: int):
        start = time.perf_counter()
        while True:
            update = mode.poll()
            case.assertFalse(update is not None and update.error, update and update.error)
            if update is not None and update.applied is not None:
                case.assertEqual(update.clicks, count)
                return update
            slicer.app.processEvents()
            time.sleep(0.05)
            case.assertLess(time.perf_counter() - start, timeout_s, "the click worker did not answer")

    try:
        mode.enter(volume, model_path, "cpu")
        include, exclude = mode.points.nodes
        case.assertEqual(app_logic.GetSelectionNode().GetActivePlaceNodeID(), include.GetID())
        include.AddControlPoint(vtk.vtkVector3d(-88.0, -88.0, 32.0))      # the ball's centre (RAS)
        segment = answered(1).applied.segmentation_node.GetSegmentation().GetSegment("Pancreas")
        terminology = vtk.reference("")
        segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
        case.assertIn("15776009", str(terminology))
        case.assertTrue(logic.overlay_nodes_for(volume))
        exclude.AddControlPoint(vtk.vtkVector3d(-150.0, -150.0, 32.0))    # in the air
        answered(2)
        case.assertTrue(mode.undo())
        answered(1)
        mode.done()
        case.assertFalse(mode.running)
        case.assertNotEqual(app_logic.GetSelectionNode().GetActivePlaceNodeID(), include.GetID())
        include.AddControlPoint(vtk.vtkVector3d(-92.0, -88.0, 32.0))
        case.assertIsNone(mode.poll())
        case.assertEqual(include.GetNumberOfControlPoints(), 2)
    finally:
        mode.cancel()


def wait_for(job, timeout_s: float = 600.0, until_progress: bool = False):
    """Let Slicer process events (the GUI stays responsive) until the job ends, or first reports
    progress with `until_progress`; AssertionError after `timeout_s`."""
    start = time.perf_counter()
    while job.poll().state == RUNNING and not (until_progress and job.poll().fraction > 0.0):
        app = getattr(slicer, "app", None)
        if app is not None:
            app.processEvents()
        time.sleep(0.05)
        if time.perf_counter() - start > timeout_s:
            raise AssertionError(f"segmentation did not {'start' if until_progress else 'finish'} in {timeout_s:g} s")
    return job.poll()


def run_self_test(case, logic, clear_scene, module_widget=None) -> None:
    """The module's self-test: the scene part always; without torch for the jobs it stops there and
    says so (SKIP_MESSAGE), else the logic's scenarios with a tiny model written by the job's
    Python, then, given `module_widget()` (the module's widget), the module through its widget.
    `clear_scene()` runs before each."""
    clear_scene()
    case.delayDisplay("Putting a result into the scene, without the network")
    scene_without_network(case, logic)
    clear_scene()
    if not torch_available_for_jobs():
        logger.warning(SKIP_MESSAGE)
        case.delayDisplay(SKIP_MESSAGE)
        return
    with tempfile.TemporaryDirectory() as folder:
        model_path = write_tiny_model(os.path.join(folder, "tiny.pt"))
        case.delayDisplay("Segmenting a synthetic CT with a tiny model in a background process")
        segment_end_to_end(case, logic, wait_for, model_path)
        clear_scene()
        case.delayDisplay("Cancelling a running segmentation")
        cancel_leaves_scene_unchanged(case, logic, lambda job: wait_for(job, 120.0, until_progress=True), model_path)
        clear_scene()
        case.delayDisplay("A broken model file gives a one-line message")
        broken_model_gives_one_line(case, logic, wait_for, os.path.join(folder, "broken.pt"))
        clear_scene()
        if module_widget is not None:
            case.delayDisplay("Segmenting two CTs through the module's widget")
            through_the_widget(case, module_widget(), model_path)
            clear_scene()
    case.delayDisplay("Click mode with the bundled click model: include, exclude, Undo, Done")
    click_mode_end_to_end(case, logic, str(default_model_path(clicks=True)))
    clear_scene()
    case.delayDisplay("Test passed")
