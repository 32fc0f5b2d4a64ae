"""The click mode (issue 18): include and exclude clicks on one CT, each list of clicks answered
by the long-lived click worker, the answer put into the scene exactly as a Segment run's result.

    enter(CT)  -> the CT's two markups nodes (click_point.py), emptied and observed; place mode
                  on the include (or exclude) node; the CT's current Pancreas segment, if any,
                  kept as the starting segment (edits made in the Segment Editor are refined,
                  not thrown away); the worker started and the CT opened (once per entry, so
                  the model loads while the user looks for the pancreas)
    a point added, moved or removed -> the observer only notes it (the markups widget is still
                  inside its PlacePoint); the next poll numbers the point
    poll()     (the module's QTimer) -> answers read; the answer to the newest list applied with
                  logic.apply_result (the same segment, terminology and overlays as Segment); if
                  the clicks changed and no request is in flight, the whole list is sent
    undo() / reset() -> remove the newest point / all points; the poll sends the new list (no
                  clicks left: the segment goes back to the starting segment, overlays hidden)
    done()     -> observers off, place mode off, our nodes no longer the active place node; the
                  last clicks are still answered and applied, then the worker is stopped
    an edit    -> the segment's voxels changed by someone else (the Segment Editor) since this
                  mode wrote them: an answer computed without the edit is dropped, and the edited
                  segment becomes the starting segment (the clicks it was made on are in it)
    cancel()   -> the worker's process tree ended now; an answer not yet shown is dropped

At most one request is in flight: clicks made while the worker computes are sent together when
it answers (each request names the whole list), so a dragged point costs one run per answer,
not one per mouse move. The worker is stopped when the mode ends: it holds the model and the
preprocessed CT (GPU memory, on a GPU), and entering again costs only a few seconds.
No Qt here: the module file owns the timer and the buttons and shows what poll() reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk
import vtk

from ..core.errors import InputError
from . import display, nodes
from .click_point import ClickPoints, enter_place_mode, is_placing, leave_place_mode, points_nodes_for
from .click_worker import ClickWorkerClient
from .failures import describe_worker_failure
from .logic import AppliedResult
from .models import click_model_path
from .results import SegmentationOutput, default_labels
from .roles import DEFAULT_OPACITY, MAX_GATE, NO_OVERLAY
from .volumes import check_input_volume, image_on_grid_of, volume_node_to_image

from .i18n import tr as _  # Slicer's translation, in this file's context

FIRST_CLICK_MESSAGE = ("the first click must be an include click, on the pancreas: turn Exclude off "
                       "(or undo the exclude click)")
EDITED_NOTE = ("The segment was edited: the clicks answered so far are kept in it (their points removed); "
               "new clicks refine the edited segment.")
EDITED_DROPPED_NOTE = "The segment was edited meanwhile: the last clicks' answer was not applied."


@dataclass
class ClickUpdate:
    """What one poll changed, for the module to show."""

    applied: Optional[AppliedResult] = None   # an answer put into the scene
    clicks: int = 0                           # how many clicks it answers
    seconds: float = 0.0                      # from sending the clicks to the answer shown
    cleared: bool = False                     # no clicks left: the starting segment is back
    error: Optional[str] = None               # one line for the user
    details: str = ""                         # the worker's log, for the dialog's details
    ended: bool = False                       # the mode ended (the worker failed, the CT went)
    note: str = ""                            # something the user should know, not an error
    volume_node: Any = None                   # the CT the answer belongs to

    def result_line(self, result_text: str) -> str:
        """The module's Result line for an answer applied, from the scene logic's `result_text`:
        the number of clicks before it, or (no clicks left) the starting segment's volumes."""
        if self.cleared:
            return _("No clicks: the segment is back as it was before them ({volumes}).").format(
                volumes=", ".join(f"{name}: {ml:.1f} mL" for name, ml in self.applied.volume_ml.items()))
        return _("Clicks: {count}. ").format(count=self.clicks) + result_text


class ClickMode:
    """The click mode of the module; `logic` is the scene logic (apply_result, the scene)."""

    def __init__(self, logic, app_logic, client_factory: Optional[Callable[[], ClickWorkerClient]] = None,
                 work_root: Optional[str] = None):
        self.logic, self.app_logic = logic, app_logic
        self.client_factory = client_factory or (lambda: ClickWorkerClient(work_root=work_root))
        self._reset_state()

    def _reset_state(self) -> None:
        self.volume_node = self.points = self.segmentation_node = self.start_segment = None
        self.exclude = self._finishing = self._opened = self._changed = False
        self._client: Optional[ClickWorkerClient] = None
        self._open_id = self._in_flight = None
        self._sent: tuple = ()
        self._sent_numbers = self._applied_numbers = ()   # click numbers of the list sent / shown
        self._written = 0                                          # the segment's MTime after our writing
        self._start_sent = False
        self._refused: Optional[tuple] = None
        self._sent_at = 0.0
        self._observations: list[tuple[Any, int]] = []
        self._arrivals: list[tuple[Any, str]] = []

    # -- state ------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """In the mode: clicks are taken (False again as soon as Done or Cancel is pressed)."""
        return self.volume_node is not None and not self._finishing

    @property
    def running(self) -> bool:
        """The worker is up: the module must keep polling."""
        return self._client is not None

    @property
    def busy(self) -> bool:
        """The worker is starting or computing: what Cancel would stop."""
        return self._client is not None and (not self._opened or self._in_flight is not None or self._finishing)

    # -- entering and leaving --------------------------------------------------------------
    def enter(self, volume_node, model_path: Optional[str], device: str = "auto", segmentation_node=None,
              exclude: bool = False, image: Optional[sitk.Image] = None) -> None:
        """Start the mode on `volume_node` (`image`: its voxels, if the caller has them already).
        Raises InputError (bad volume), PythonSlicerNotFound or OSError (the worker cannot start)
        before the scene is touched."""
        self.cancel()
        if image is None:
            image = volume_node_to_image(volume_node)      # checks the volume; a copy for the worker
        client = self.client_factory()
        client.start()
        try:
            self._enter(volume_node, client, segmentation_node, exclude)
        except Exception:
            self.cancel()
            client.stop()
            raise
        self._open_id = client.open(image, model_path, device)

    def enter_for(self, parameters, exclude: bool, go_ahead: Callable[[sitk.Image, Any], bool]) -> bool:
        """The mode on the parameter node's CT (checked first) with its click model (models.py), once
        `go_ahead(image, volume_node)` agrees (the user's, PyTorch present); False when it did not.
        Raises as `enter`."""
        volume = parameters.inputVolume if parameters else None
        check_input_volume(volume)
        model_path = click_model_path(parameters.model, parameters.modelPath)
        image = volume_node_to_image(volume)
        if not go_ahead(image, volume):
            return False
        self.enter(volume, model_path, parameters.device, parameters.outputSegmentation, exclude, image=image)
        return True

    def _enter(self, volume_node, client, segmentation_node, exclude: bool) -> None:
        scene = self.logic.scene
        if segmentation_node is None or segmentation_node.GetScene() is not scene:
            segmentation_node = nodes.segmentation_node_for(volume_node)
        self.segmentation_node = segmentation_node
        display.drop_surface(segmentation_node)         # built again when the mode ends
        self.start_segment = nodes.segment_labelmap(scene, self.logic.segmentations_logic, segmentation_node,
                                                    self._segment_id(), volume_node)
        self._written = self._segment_mtime()
        self.volume_node, self._client = volume_node, client
        self.points = ClickPoints(volume_node, *points_nodes_for(scene, volume_node))
        self.points.remove_all()       # a new set of clicks; the earlier ones live on in the segment
        for node in self.points.nodes:
            self._observations.append((node, node.AddObserver(node.PointPositionDefinedEvent, self._on_point_placed)))
            for event in (node.PointModifiedEvent, node.PointRemovedEvent, node.PointPositionUndefinedEvent):
                self._observations.append((node, node.AddObserver(event, self._on_points_changed)))
        self.set_exclude(exclude)

    @vtk.calldata_type(vtk.VTK_INT)
    def _on_point_placed(self, caller, event, index=None) -> None:
        """Only noted (the markups widget is still inside PlacePoint): the point's ID, so that
        points placed between two polls are numbered in the order they were placed."""
        if index is not None and 0 <= index < caller.GetNumberOfControlPoints():
            self._arrivals.append((caller, caller.GetNthControlPointID(index)))
        self._changed = True

    def _on_points_changed(self, caller, event) -> None:
        self._changed = True       # only noted, as above

    def placing_stopped(self) -> bool:
        """In the mode, but place mode was left another way (Esc, the toolbar): worth saying how to go on."""
        return self.active and not is_placing(self.app_logic, self.points.exclude_node if self.exclude
                                              else self.points.include_node)

    def set_exclude(self, exclude: bool) -> None:
        """Clicks in the views add exclude points (True) or include points (False)."""
        self.exclude = bool(exclude)
        if self.active:
            enter_place_mode(self.app_logic, self.points.exclude_node if exclude else self.points.include_node)

    def _detach(self) -> None:
        for node, tag in self._observations:
            node.RemoveObserver(tag)
        self._observations = []
        if self.points is not None:
            leave_place_mode(self.app_logic, self.points.nodes)

    def done(self) -> None:
        """Leave the mode keeping the segment; the last clicks are still answered (see poll)."""
        if not self.active:
            return
        self._detach()
        self._finishing = True
        self._finish_if_idle()

    def cancel(self) -> None:
        """End the worker's process tree now and leave the mode; an answer not shown yet is dropped."""
        self._detach()
        if self._client is not None:
            self._client.stop()
        if self.segmentation_node is not None and self.segmentation_node.GetScene() is self.logic.scene:
            display.show_surface(self.segmentation_node)
        self._reset_state()

    def _finish_if_idle(self) -> None:
        """After Done: stop once the clicks as they are now have been answered (or refused)."""
        if self._finishing and self._in_flight is None and (
                not self._opened or self._current() in (self._sent, self._refused)):
            self.cancel()

    # -- Undo, Reset ----------------------------------------------------------------------------
    def undo(self) -> bool:
        """Remove the newest click (include or exclude); False when there is none."""
        return self.active and self.points.remove_last()

    def reset(self) -> None:
        """Remove every click: the segment goes back to what it was when the mode was entered."""
        if self.active:
            self.points.remove_all()
            self._changed = True

    # -- polling ------------------------------------------------------------------------------------
    def _sync(self) -> None:
        if self._changed and self.points is not None:
            self._changed = False
            arrivals, self._arrivals = self._arrivals, []
            self.points.sync(arrivals)   # numbers and labels: they fire point events, so never inside one

    def _current(self) -> tuple:
        self._sync()
        return self.points.clicks()

    def poll(self, gate: str = MAX_GATE, opacity: float = DEFAULT_OPACITY) -> Optional[ClickUpdate]:
        """Read the worker's answers, apply the newest, send changed clicks (the GUI's timer)."""
        if self._client is None:
            return None
        update = None
        for answer in self._client.poll():
            update = self._handle(answer, gate, opacity) or update
            if self._client is None:
                return update
        if self.volume_node is not None and self.volume_node.GetScene() is not self.logic.scene:
            self.cancel()
            return ClickUpdate(error="the CT was removed from the scene; the click mode ended", ended=True)
        self._sync()
        if self._opened and self._in_flight is None and self.points is not None:
            if self.active and self._edited():
                update = self._adopt_edit()
            clicks = self._current()
            if clicks != self._sent:
                update = self._send(clicks) or update
        self._finish_if_idle()
        return update

    def _send(self, clicks: tuple) -> Optional[ClickUpdate]:
        if clicks and not clicks[0].include and self.start_segment is None:
            if self._refused != clicks:      # said once per list, not on every poll
                self._refused = clicks
                return ClickUpdate(error=FIRST_CLICK_MESSAGE)
            return None
        start = None if self._start_sent else self.start_segment
        self._in_flight = self._client.send_clicks(clicks, start_segment=start, keep_start=self._start_sent)
        self._start_sent, self._sent, self._sent_at = True, clicks, time.perf_counter()
        self._sent_numbers = tuple(number for number, _, _ in self.points.ordered())
        return None

    def _handle(self, answer: dict, gate: str, opacity: float) -> Optional[ClickUpdate]:
        client = self._client
        if answer.get("id") is None or (answer.get("id") == self._open_id and not answer.get("ok")):
            # The worker died, or cannot open this CT with this model: the mode cannot go on.
            log = list(client.log_lines)
            self.cancel()
            return ClickUpdate(error=describe_worker_failure(answer.get("error", "the click worker failed"), log),
                               details="\n".join(log), ended=True)
        if answer.get("id") == self._open_id:
            self._opened = True
            return None
        if answer.get("id") != self._in_flight:
            return None                        # an answer nobody waits for any more
        self._in_flight = None
        if not answer.get("ok"):
            return ClickUpdate(error=answer.get("error", "the click worker failed"))
        if self._edited():   # computed without the edit made meanwhile: applying it would undo the edit
            return ClickUpdate(note=EDITED_DROPPED_NOTE)
        try:
            output = client.result(answer)
            cleared = output is None
            if cleared:
                output = SegmentationOutput(self._start_labelmap(), {}, default_labels(), {})
            applied = self.logic.apply_result(self.volume_node, output, segmentation_node=self.segmentation_node,
                                              gate=gate, opacity=opacity, surface=False)
            if cleared:   # the overlays showed where the network looked for clicks that are gone
                self.logic.show_overlay(self.volume_node, NO_OVERLAY)
        except (InputError, RuntimeError, OSError) as error:
            gone = self.volume_node.GetScene() is not self.logic.scene
            if gone:
                self.cancel()
            return ClickUpdate(error=f"could not show the clicks' result: {error}", ended=gone)
        self.segmentation_node = applied.segmentation_node
        self._written, self._applied_numbers = self._segment_mtime(), self._sent_numbers
        return ClickUpdate(applied=applied, clicks=len(self._sent), cleared=cleared, volume_node=self.volume_node,
                           seconds=time.perf_counter() - self._sent_at)

    # -- the starting segment, and edits made to it ----------------------------------------------------
    @staticmethod
    def _segment_id() -> str:
        return str(default_labels()[0]["name"])          # "Pancreas", as Segment writes it

    def _segment_mtime(self) -> int:
        """When the segment's voxels last changed (0: no segment): the Segment Editor's effects
        change them, display settings and the 3D surface do not."""
        node = self.segmentation_node
        if node is None or node.GetScene() is not self.logic.scene:
            return 0
        segmentation = node.GetSegmentation()
        segment = segmentation.GetSegment(self._segment_id())
        voxels = segment.GetRepresentation(segmentation.GetSourceRepresentationName()) if segment else None
        return voxels.GetMTime() if voxels is not None else 0

    def _edited(self) -> bool:
        """The segment was changed by someone else (the Segment Editor) since this mode wrote it."""
        return self._segment_mtime() != self._written

    def _adopt_edit(self) -> ClickUpdate:
        """An edit made during the mode becomes the starting segment: the clicks whose answer it
        was made on are in it (their points go), the newer clicks refine it; never thrown away."""
        self.start_segment = nodes.segment_labelmap(self.logic.scene, self.logic.segmentations_logic,
                                                    self.segmentation_node, self._segment_id(), self.volume_node)
        self.points.remove_numbers(self._applied_numbers)
        self._start_sent, self._sent, self._applied_numbers = False, (), ()
        self._written, self._changed = self._segment_mtime(), True
        return ClickUpdate(note=EDITED_NOTE)

    def _start_labelmap(self) -> sitk.Image:
        """The starting segment, or an empty labelmap on the CT's grid (no segment before)."""
        if self.start_segment is not None:
            return self.start_segment
        dims = self.volume_node.GetImageData().GetDimensions()
        return image_on_grid_of(np.zeros(dims[::-1], dtype=np.uint8), self.volume_node)
