"""The click mode's controller (scene/interactive_mode.py, click_point.py) against a real MRML scene:
the order of clicks across the two markups nodes, Undo, moving a point, Reset, Done, the starting
segment, answers applied as Segment applies them; first with a recording stand-in of the worker's
client (not of MRML), then end to end with the real worker process and a tiny click model."""

from __future__ import annotations

import itertools
import os
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from AttentionUNetSegmentLib.core.options import Click  # noqa: E402
from AttentionUNetSegmentLib.scene.click_point import ClickPoints, points_nodes_for  # noqa: E402
from AttentionUNetSegmentLib.scene.click_worker import ClickWorkerClient  # noqa: E402
from AttentionUNetSegmentLib.scene.interactive_mode import (  # noqa: E402
    EDITED_DROPPED_NOTE, EDITED_NOTE, FIRST_CLICK_MESSAGE, ClickMode)
from AttentionUNetSegmentLib.scene.roles import MAX_GATE, MODULE_ATTRIBUTE  # noqa: E402
from vtk.util import numpy_support  # noqa: E402
from mrml_helpers import export_segment, labels_like, output_like, phantom_ct, terminology  # noqa: E402

PANCREAS_TERMINOLOGY_CODE = "15776009"


class RecordingClient:
    """Stands in for ClickWorkerClient (a process, not MRML): records requests; the test answers."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.requests, self.answers, self.outputs, self.log_lines = [], [], {}, []
        self.started = self.stopped = False

    def start(self):
        self.started = True
        return self

    def open(self, image, model_path=None, device="auto"):
        self.requests.append({"id": next(self.ids), "op": "open", "image": image, "model": model_path})
        return self.requests[-1]["id"]

    def send_clicks(self, clicks, start_segment=None, keep_start=False):
        self.requests.append({"id": next(self.ids), "op": "clicks", "clicks": tuple(clicks),
                              "start_segment": start_segment, "keep_start": keep_start})
        return self.requests[-1]["id"]

    def answer(self, request, output=None, ok=True, error=""):
        answer = {"id": request["id"], "op": request["op"], "ok": ok}
        if not ok:
            answer["error"] = error
        elif request["op"] == "clicks":
            answer["result_dir"] = None if output is None else f"result-{request['id']}"
            self.outputs[answer["result_dir"]] = output
        self.answers.append(answer)

    def poll(self):
        answers, self.answers = self.answers, []
        return answers

    def result(self, answer):
        return self.outputs[answer["result_dir"]]

    def stop(self):
        self.stopped = True

    @property
    def clicks_requests(self):
        return [r for r in self.requests if r["op"] == "clicks"]


@pytest.fixture
def ct_image():
    return phantom_ct(np.eye(3))


@pytest.fixture
def mode(mrml, ct_image):
    ct = mrml.add_ct(ct_image)
    controller = ClickMode(mrml.logic, mrml.app_logic, client_factory=RecordingClient)
    controller.ct = ct
    yield controller
    controller.cancel()


def _opened(mode, model="click.pt", **kwargs):
    mode.enter(mode.ct, model, "cpu", **kwargs)
    mode.client = mode._client                            # a new one each time the mode is entered
    mode.client.answer(mode.client.requests[0])
    assert mode.poll() is None and not mode.busy
    return mode


def _include_click_answered(mode, ct_image):
    """An include click at the CT's centre, sent at the next poll, answered, and that answer polled."""
    _point(mode, mode.points.include_node)
    mode.poll()
    mode.client.answer(mode.client.clicks_requests[-1], output_like(ct_image))
    return mode.poll()


def _point(mode, node, offset=(0.0, 0.0, 0.0)):
    bounds = [0.0] * 6
    mode.ct.GetRASBounds(bounds)
    centre = np.array([(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2])
    position = centre + np.asarray(offset, dtype=float)
    node.AddControlPoint(vtk.vtkVector3d(*position))
    return tuple(position)


def test_two_nodes_per_ct_found_again_through_references(mrml, ct_image):
    ct, other = mrml.add_ct(ct_image, "CT"), mrml.add_ct(ct_image, "Other", study=False)
    include, exclude = points_nodes_for(mrml.scene, ct)
    assert (include.GetName(), exclude.GetName()) == ("CT pancreas include", "CT pancreas exclude")
    assert include.GetAttribute(MODULE_ATTRIBUTE) == "include points"
    assert include.GetDisplayNode().GetSelectedColor() != exclude.GetDisplayNode().GetSelectedColor()
    assert points_nodes_for(mrml.scene, ct) == (include, exclude)
    assert set(points_nodes_for(mrml.scene, other)).isdisjoint({include, exclude})
    assert points_nodes_for(mrml.scene, mrml.add_ct(ct_image, "Third", study=False), create=False) == (None, None)


def test_click_order_and_undo_across_the_two_nodes(mode):
    _opened(mode)
    include, exclude = mode.points.nodes
    a = _point(mode, include)
    b = _point(mode, exclude, (5, 0, 0))
    c = _point(mode, include, (0, 4, 0))
    mode.poll()
    assert mode.points.clicks() == (Click(a, True), Click(b, False), Click(c, True))
    assert [include.GetNthControlPointLabel(i) for i in range(2)] == ["1", "3"]
    assert exclude.GetNthControlPointLabel(0) == "2"
    assert mode.undo()                                    # the newest click, in the include node
    assert include.GetNumberOfControlPoints() == 1 and exclude.GetNumberOfControlPoints() == 1
    d = _point(mode, include, (0, -4, 0))                 # numbered after the others, not in its slot
    mode.poll()
    assert mode.points.clicks() == (Click(a, True), Click(b, False), Click(d, True))
    assert mode.undo() and mode.undo()                    # d (include), then b (exclude)
    assert mode.points.clicks() == (Click(a, True),) and exclude.GetNumberOfControlPoints() == 0
    assert mode.undo() and not mode.undo()


def test_each_change_sends_the_whole_list_one_request_at_a_time(mode, mrml, ct_image):
    client = _opened(mode).client
    include, exclude = mode.points.nodes
    assert client.clicks_requests == []                   # entering sends nothing
    a = _point(mode, include)
    assert client.clicks_requests == []                   # nothing inside the markups event
    mode.poll()
    assert [r["clicks"] for r in client.clicks_requests] == [(Click(a, True),)] and mode.busy
    b = _point(mode, exclude, (6, 0, 0))
    mode.poll()
    assert len(client.clicks_requests) == 1               # one request in flight at a time
    client.answer(client.clicks_requests[-1], output_like(ct_image))
    update = mode.poll()
    assert update.applied is not None and update.clicks == 1 and not update.error
    assert [r["clicks"] for r in client.clicks_requests][-1] == (Click(a, True), Click(b, False))

    client.answer(client.clicks_requests[-1], output_like(ct_image, seed=1))
    mode.poll()
    moved = (a[0] + 3.0, a[1], a[2])
    include.SetNthControlPointPosition(0, *moved)         # moving a point re-runs
    mode.poll()
    assert client.clicks_requests[-1]["clicks"] == (Click(moved, True), Click(b, False))
    client.answer(client.clicks_requests[-1], output_like(ct_image))
    mode.poll()
    count = len(client.clicks_requests)
    mode.poll()
    assert len(client.clicks_requests) == count           # nothing changed, nothing sent
    assert all(r["start_segment"] is None for r in client.clicks_requests)
    assert [r["keep_start"] for r in client.clicks_requests] == [False, True, True]


def test_an_answer_gives_the_pancreas_segment_with_terminology_and_overlays(mode, mrml, ct_image):
    client = _opened(mode).client
    _point(mode, mode.points.include_node)
    mode.poll()
    output = output_like(ct_image)
    client.answer(client.clicks_requests[-1], output)
    update = mode.poll(gate="gate3", opacity=0.4)
    segmentation = update.applied.segmentation_node
    assert segmentation is mrml.logic.segmentation_node_for(mode.ct)       # the same node Segment writes
    segment = segmentation.GetSegmentation().GetSegment("Pancreas")
    assert segment.GetName() == "Pancreas" and PANCREAS_TERMINOLOGY_CODE in terminology(segment)
    exported = slicer.util.arrayFromVolume(export_segment(mrml, segmentation, mode.ct))
    assert np.array_equal(exported > 0, sitk.GetArrayViewFromImage(output.labelmap) > 0)
    overlays = mrml.logic.overlay_nodes_for(mode.ct)
    assert sorted(overlays) == ["gate2", "gate3", "gate4", MAX_GATE]
    assert mrml.composite.GetForegroundVolumeID() == overlays["gate3"].GetID()
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(0.4)
    assert update.applied.volume_ml["Pancreas"] > 0


def test_an_existing_segment_is_refined_not_thrown_away(mode, mrml, ct_image):
    """A segment from Segment (or edited in the Segment Editor) is the starting segment: sent with
    the first clicks, named again with the later ones, and what Reset goes back to."""
    edited = labels_like(ct_image, center=(8, 15, 20), radii=(3, 5, 6))
    mrml.logic.apply_result(mode.ct, output_like(ct_image, center=(8, 15, 20), radii=(3, 5, 6)))
    before = mrml.node_ids()
    client = _opened(mode).client
    include, exclude = mode.points.nodes
    b = _point(mode, exclude, (4, 0, 0))                  # an exclude click may come first here
    mode.poll()
    first = client.clicks_requests[-1]
    assert first["clicks"] == (Click(b, False),) and not first["keep_start"]
    assert np.array_equal(sitk.GetArrayViewFromImage(first["start_segment"]), sitk.GetArrayViewFromImage(edited))
    assert first["start_segment"].GetOrigin() == pytest.approx(ct_image.GetOrigin())
    client.answer(first, output_like(ct_image))
    mode.poll()
    _point(mode, include)
    mode.poll()
    assert client.clicks_requests[-1]["start_segment"] is None and client.clicks_requests[-1]["keep_start"]
    client.answer(client.clicks_requests[-1], output_like(ct_image, seed=2))
    mode.poll()

    mode.reset()                                          # every click removed: back to the edited segment
    mode.poll()
    assert client.clicks_requests[-1]["clicks"] == () and mode.points.clicks() == ()
    client.answer(client.clicks_requests[-1], None)      # the worker's "no clicks left"
    update = mode.poll()
    assert update.cleared and not update.error
    segmentation = mrml.logic.segmentation_node_for(mode.ct)
    exported = slicer.util.arrayFromVolume(export_segment(mrml, segmentation, mode.ct))
    assert np.array_equal(exported > 0, sitk.GetArrayViewFromImage(edited) > 0)
    assert mrml.logic.overlay_nodes_for(mode.ct) and not mrml.composite.GetForegroundVolumeID()  # hidden
    assert segmentation.GetID() in before                 # the same segmentation node throughout


def test_reset_without_a_starting_segment_clears_what_the_mode_wrote(mode, mrml, ct_image):
    client = _opened(mode).client
    _include_click_answered(mode, ct_image)
    mode.reset()
    mode.poll()
    client.answer(client.clicks_requests[-1], None)
    assert mode.poll().cleared
    segmentation = mrml.logic.segmentation_node_for(mode.ct)
    assert not slicer.util.arrayFromVolume(export_segment(mrml, segmentation, mode.ct)).any()
    assert mode.active and mode.points.clicks() == ()


def test_done_detaches_observers_and_the_place_node_after_the_last_answer(mode, mrml, ct_image):
    client = _opened(mode).client
    interaction, selection = mrml.app_logic.GetInteractionNode(), mrml.app_logic.GetSelectionNode()
    include, exclude = mode.points.nodes
    assert selection.GetActivePlaceNodeID() == include.GetID() and interaction.GetCurrentInteractionMode() == \
        interaction.Place and interaction.GetPlaceModePersistence()
    mode.set_exclude(True)
    assert selection.GetActivePlaceNodeID() == exclude.GetID()
    mode.set_exclude(False)
    _point(mode, include)
    mode.done()                                           # the click is not answered yet: still sent
    assert not mode.active and mode.busy and not selection.GetActivePlaceNodeID()
    assert interaction.GetCurrentInteractionMode() == interaction.ViewTransform
    mode.poll()
    client.answer(client.clicks_requests[-1], output_like(ct_image))
    assert mode.poll().applied is not None
    assert client.stopped and not mode.running            # the worker is stopped once all is shown
    count = len(client.clicks_requests)
    _point(mode, include, (3, 0, 0))                      # the Markups toolbar, after the mode
    assert mode.poll() is None and len(client.clicks_requests) == count
    assert include.GetNumberOfControlPoints() == 2 and not include.HasObserver(include.PointPositionDefinedEvent)


def test_first_click_exclude_is_refused_once_and_cancel_drops_the_answer(mode, mrml, ct_image):
    client = _opened(mode).client
    _point(mode, mode.points.exclude_node)
    assert mode.poll().error == FIRST_CLICK_MESSAGE
    assert mode.poll() is None and client.clicks_requests == []   # said once, nothing sent
    assert mode.undo()
    _point(mode, mode.points.exclude_node)
    mode.poll()
    mode.done()                                           # a refused list is not waited for
    assert not mode.running and client.stopped
    client = _opened(mode).client
    _point(mode, mode.points.include_node)
    mode.poll()
    ids = mrml.node_ids()
    mode.cancel()                                         # Cancel while the worker computes
    assert client.stopped and not mode.running and not mode.active
    assert mrml.node_ids() == ids


def test_a_dead_worker_ends_the_mode_with_one_line(mode, mrml):
    client = _opened(mode).client
    client.log_lines = ["Traceback ...", "ModuleNotFoundError: No module named 'torch'"]
    client.answers.append({"id": None, "ok": False, "error": "the click worker ended unexpectedly"})
    update = mode.poll()
    assert update.ended and update.error.startswith("PyTorch is not installed") and "Traceback" in update.details
    assert client.stopped and not mode.active


def test_a_model_without_click_channels_is_said_in_one_line(mode):
    mode.enter(mode.ct, "plain.pt", "cpu")
    mode._client.answer(mode._client.requests[0], ok=False,
                       error="plain.pt: this model has no click channels; choose a click-conditioned model")
    update = mode.poll()
    assert update.ended and update.error.endswith("choose a click-conditioned model") and not mode.active


def test_the_real_worker_answers_clicks_through_the_controller(mrml, small_ct, tiny_click_model_path, tmp_path):
    """End to end: the worker process with a tiny click model, polled as the module's timer does."""
    repo_lib = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        sys.modules["AttentionUNetSegmentLib"].__file__))))
    clients = []

    def factory():
        clients.append(ClickWorkerClient(python_executable=sys.executable, work_root=str(tmp_path),
                                         env={**os.environ, "PYTHONPATH": repo_lib}))
        return clients[-1]

    ct = mrml.add_ct(small_ct)
    mode = ClickMode(mrml.logic, mrml.app_logic, client_factory=factory)
    mode.ct = ct
    try:
        mode.enter(ct, str(tiny_click_model_path), "cpu")
        _point(mode, mode.points.include_node)

        def answered(timeout=120):
            deadline = time.perf_counter() + timeout
            while True:
                update = mode.poll()
                if update is not None and (update.applied or update.error):
                    return update
                assert time.perf_counter() < deadline, "no answer"
                time.sleep(0.05)

        update = answered()
        assert update.error is None and update.clicks == 1
        assert sorted(mrml.logic.overlay_nodes_for(ct)) == ["gate2", "gate3", "gate4", MAX_GATE]
        segment = update.applied.segmentation_node.GetSegmentation().GetSegment("Pancreas")
        assert PANCREAS_TERMINOLOGY_CODE in terminology(segment)
        _point(mode, mode.points.exclude_node, (9, 0, 0))
        update = answered()
        assert update.error is None and update.clicks == 2
        work_dir = clients[0].work_dir
        mode.done()
        assert not mode.running and not work_dir.exists()
    finally:
        mode.cancel()
    assert not clients[0].alive


def test_leaving_does_not_stop_placing_into_the_users_own_node(mode, mrml):
    _opened(mode)
    interaction, selection = mrml.app_logic.GetInteractionNode(), mrml.app_logic.GetSelectionNode()
    _point(mode, mode.points.include_node)
    mode.done()                                           # waits for the answer to that click
    own = mrml.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "my points")
    selection.SetActivePlaceNodeID(own.GetID())           # the user places into a node of their own
    interaction.SetCurrentInteractionMode(interaction.Place)
    mode.cancel()
    assert selection.GetActivePlaceNodeID() == own.GetID()
    assert interaction.GetCurrentInteractionMode() == interaction.Place


def _edit(mrml, mode, ct_image):
    """What a Segment Editor effect does: new voxels for the segment (SetBinaryLabelmapToSegment)."""
    segmentation = mrml.logic.segmentation_node_for(mode.ct)
    edited = labels_like(ct_image, center=(8, 20, 12), radii=(3, 4, 4))
    voxels = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(mode.ct)
    voxels.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(voxels.GetPointData().GetScalars())[:] = sitk.GetArrayViewFromImage(edited).ravel()
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        voxels, segmentation, "Pancreas", slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    return edited


def test_an_edit_during_the_mode_is_refined_not_thrown_away(mode, mrml, ct_image):
    client = _opened(mode).client
    include, exclude = mode.points.nodes
    _point(mode, include)
    mode.poll()
    client.answer(client.clicks_requests[-1], output_like(ct_image))
    mode.poll()
    segmentation = mrml.logic.segmentation_node_for(mode.ct)
    segmentation.CreateClosedSurfaceRepresentation()         # display changes are not edits
    segmentation.GetDisplayNode().SetOpacity(0.5)
    assert mode.poll() is None
    _point(mode, include, (0, 5, 0))
    mode.poll()                                               # click 2 computed ...
    edited = _edit(mrml, mode, ct_image)                      # ... while the user edits the segment
    client.answer(client.clicks_requests[-1], output_like(ct_image, seed=3))
    update = mode.poll()
    assert update.note == EDITED_NOTE and update.applied is None   # not applied over the edit
    exported = slicer.util.arrayFromVolume(export_segment(mrml, segmentation, mode.ct))
    assert np.array_equal(exported > 0, sitk.GetArrayViewFromImage(edited) > 0)
    request = client.clicks_requests[-1]                      # click 1 is in the edit; click 2 refines it
    assert include.GetNumberOfControlPoints() == 1 and include.GetNthControlPointLabel(0) == "2"
    assert request["clicks"] == mode.points.clicks() and len(request["clicks"]) == 1
    assert np.array_equal(sitk.GetArrayViewFromImage(request["start_segment"]), sitk.GetArrayViewFromImage(edited))
    client.answer(request, output_like(ct_image, seed=4))
    assert mode.poll().applied is not None


def test_an_edit_after_done_is_not_overwritten_by_the_last_answer(mode, mrml, ct_image):
    client = _opened(mode).client
    _include_click_answered(mode, ct_image)
    _point(mode, mode.points.include_node, (0, 5, 0))
    mode.poll()
    mode.done()                                               # e.g. leaving for the Segment Editor
    edited = _edit(mrml, mode, ct_image)
    client.answer(client.clicks_requests[-1], output_like(ct_image, seed=5))
    assert mode.poll().note == EDITED_DROPPED_NOTE
    assert not mode.running and client.stopped
    segmentation = mrml.logic.segmentation_node_for(mode.ct)
    exported = slicer.util.arrayFromVolume(export_segment(mrml, segmentation, mode.ct))
    assert np.array_equal(exported > 0, sitk.GetArrayViewFromImage(edited) > 0)


def test_the_3d_surface_is_left_out_while_clicking_and_built_when_the_mode_ends(mode, mrml, ct_image):
    """Slicer rebuilds a segment's surface after every change of its voxels while the surface
    exists (0.2 s a click on a 512x512 CT): the mode drops it on entering and builds it at the end."""
    surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    mrml.logic.apply_result(mode.ct, output_like(ct_image, center=(8, 15, 20), radii=(3, 5, 6)))
    segmentation = mrml.logic.segmentation_node_for(mode.ct)
    assert segmentation.GetSegmentation().ContainsRepresentation(surface)      # Segment's result has one
    _opened(mode)
    assert not segmentation.GetSegmentation().ContainsRepresentation(surface)
    assert _include_click_answered(mode, ct_image).applied is not None
    assert not segmentation.GetSegmentation().ContainsRepresentation(surface)
    mode.done()
    assert not mode.running and segmentation.GetSegmentation().ContainsRepresentation(surface)
