"""The module file's click mode (Qt side faked, see module_fakes.py; scene, markups, VTK observers
and the click worker's process real)."""

from __future__ import annotations

import time

import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from module_fakes import FakeTimer, run_pending_single_shots  # noqa: E402
from test_module_file import _use_model, module_file, widget  # noqa: E402,F401 - fixtures


def _centre(ct):
    bounds = [0.0] * 6
    ct.GetRASBounds(bounds)
    return [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2]


def test_points_added_after_leaving_click_mode_start_nothing(widget, module_file, mrml, tiny_click_model_path):
    """Issue 19: the point node stayed observed and the active place node after the mode, so a point
    placed later with the Markups toolbar started a run and deleted the other points."""
    ui, fakes = widget.ui, module_file.fakes
    _use_model(widget, tiny_click_model_path)
    widget._parameterNode.device = "cpu"
    ui.clickToSegmentButton.checked = True
    ui.clickToSegmentButton.emit("toggled(bool)", True)
    node = mrml.scene.GetNodeByID(fakes.selection.GetActivePlaceNodeID())
    assert node is not None and fakes.interaction.GetCurrentInteractionMode() == fakes.interaction.Place
    ui.clickToSegmentButton.checked = False                          # leave the mode without a click
    ui.clickToSegmentButton.emit("toggled(bool)", False)
    assert fakes.interaction.GetCurrentInteractionMode() != fakes.interaction.Place
    assert fakes.selection.GetActivePlaceNodeID() != node.GetID()   # the toolbar no longer places into it

    centre = _centre(widget.ct)
    for offset in (0.0, 3.0):                                         # the Markups toolbar places two points
        node.AddControlPoint(vtk.vtkVector3d(centre[0] + offset, centre[1], centre[2]))
    run_pending_single_shots()
    for timer in [t for t in FakeTimer.instances if t.active]:
        for slot in timer.slots:
            slot()
    assert node.GetNumberOfControlPoints() == 2                       # nothing deleted
    assert widget._job is None and not fakes.errors                   # nothing started
    assert not widget._clickMode.running


def _poll_until(widget, done, timeout=120):
    """What the module's click timer does: call onClickTimer until `done()`."""
    deadline = time.perf_counter() + timeout
    while not done():
        widget.onClickTimer()
        time.sleep(0.05)
        assert time.perf_counter() < deadline, "the click worker did not answer"


def test_click_mode_wiring_include_exclude_undo_reset_done(widget, module_file, mrml, tiny_click_model_path):
    """The buttons forward to the controller; answers reach the Result line and the gate list; the
    click placed through a real markups node is handled after the placement event returned."""
    ui, p, fakes = widget.ui, widget._parameterNode, module_file.fakes
    _use_model(widget, tiny_click_model_path)
    p.device = "cpu"
    assert not any(b.enabled for b in (ui.excludeButton, ui.undoButton, ui.resetButton, ui.doneButton))
    ui.clickToSegmentButton.checked = True
    ui.clickToSegmentButton.emit("toggled(bool)", True)
    mode = widget._clickMode
    assert mode.active and widget._clickTimer.active and not fakes.errors
    assert all(b.enabled for b in (ui.excludeButton, ui.undoButton, ui.resetButton, ui.doneButton))
    assert ui.segmentButton.text == "Cancel" and not ui.inputVolumeSelector.enabled    # the worker is starting
    include, exclude = mode.points.nodes
    assert fakes.selection.GetActivePlaceNodeID() == include.GetID()

    centre = _centre(widget.ct)
    index = include.AddControlPoint(vtk.vtkVector3d(*centre))         # PlacePoint's event
    assert index == 0 and include.GetNumberOfControlPoints() == 1     # nothing removed inside it
    _poll_until(widget, lambda: "Clicks: 1." in ui.resultLabel.text)
    assert "Pancreas:" in ui.resultLabel.text and not fakes.errors
    assert ui.gateComboBox.itemTexts()[0] == "Maximum over gates"
    assert p.outputSegmentation is widget.logic.segmentation_node_for(widget.ct)

    ui.excludeButton.checked = True
    ui.excludeButton.emit("toggled(bool)", True)
    assert fakes.selection.GetActivePlaceNodeID() == exclude.GetID()
    exclude.AddControlPoint(vtk.vtkVector3d(centre[0] + 9, centre[1], centre[2]))
    _poll_until(widget, lambda: "Clicks: 2." in ui.resultLabel.text)
    ui.undoButton.emit("clicked(bool)", False)                        # the exclude point goes
    assert exclude.GetNumberOfControlPoints() == 0 and include.GetNumberOfControlPoints() == 1
    _poll_until(widget, lambda: "Clicks: 1." in ui.resultLabel.text and not mode.busy)
    ui.resetButton.emit("clicked(bool)", False)
    _poll_until(widget, lambda: ui.resultLabel.text.startswith("No clicks") and not mode.busy)
    assert include.GetNumberOfControlPoints() == 0

    ui.doneButton.emit("clicked(bool)", False)
    assert not ui.clickToSegmentButton.checked and not mode.active and not mode.running
    assert not any(b.enabled for b in (ui.excludeButton, ui.undoButton, ui.resetButton, ui.doneButton))
    assert ui.segmentButton.text == "Segment" and ui.segmentButton.enabled
    assert fakes.selection.GetActivePlaceNodeID() is None
    widget.onClickTimer()
    assert not widget._clickTimer.active


def test_click_mode_errors_and_cancel(widget, module_file, mrml, tiny_model_path, tmp_path):
    """A model without click channels: one line, the mode off; Cancel stops the worker's processes."""
    ui, p, fakes = widget.ui, widget._parameterNode, module_file.fakes
    _use_model(widget, tiny_model_path)
    p.device = "cpu"
    ui.clickToSegmentButton.checked = True
    ui.clickToSegmentButton.emit("toggled(bool)", True)
    _poll_until(widget, lambda: fakes.errors)
    assert fakes.errors[-1][0].endswith("this model has no click channels; choose a click-conditioned model")
    assert not ui.clickToSegmentButton.checked and not widget._clickMode.running

    p.modelPath = str(tmp_path / "missing.pt")
    ui.clickToSegmentButton.checked = True
    ui.clickToSegmentButton.emit("toggled(bool)", True)
    assert "missing.pt: does not exist" in ui.statusLabel.text and not ui.clickToSegmentButton.checked

    _use_model(widget, tiny_model_path)
    ui.clickToSegmentButton.checked = True
    ui.clickToSegmentButton.emit("toggled(bool)", True)
    client = widget._clickMode._client
    ids = mrml.node_ids()
    widget.onSegmentButton()                                          # Cancel while the worker starts
    assert not client.alive and not client.work_dir.exists() and not widget._clickMode.running
    assert ui.statusLabel.text.startswith("Cancelled") and not ui.clickToSegmentButton.checked
    assert mrml.node_ids() == ids
