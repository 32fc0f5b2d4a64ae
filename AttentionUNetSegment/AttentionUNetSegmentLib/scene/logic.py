"""AttentionUNetSegmentSceneLogic: a CT volume node in, segmentation and attention overlays out.

    volume node --volumes.volume_node_to_image--> SimpleITK image
      --job.SegmentationJob--> background `segment` process --> results.SegmentationOutput
      --apply_result--> one batch of scene changes (nodes.py), then shown (display.py)

Nothing touches the scene until a job has succeeded: cancel and failure leave it as it was.
The module's Logic class is this class on `slicer.mrmlScene`; tests give their own scene.

Slicer imports the module file, and so this file, at start-up: numpy, SimpleITK and the modules
that need them (volumes, nodes, display) are imported inside the methods, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

import slicer

from ..core.errors import InputError
from ..core.options import DEFAULT_OVERLAP
from .job import SegmentationJob
from .results import SegmentationOutput, default_labels
from .roles import (
    DEFAULT_OPACITY,
    MAX_GATE,
    NO_OVERLAY,
    collection_items,
    is_attention_overlay,
)

from .i18n import tr as _  # Slicer's translation, in this file's context

if TYPE_CHECKING:
    import numpy as np


@dataclass
class AppliedResult:
    segmentation_node: Any
    overlay_nodes: dict[str, Any]        # gate name (and MAX_GATE) -> vtkMRMLScalarVolumeNode
    volume_ml: dict[str, float]          # segment name -> mL
    summary: dict[str, Any]


def _volumes_ml(labels_zyx: np.ndarray, labels: list[dict], spacing: Sequence[float]) -> dict[str, float]:
    import numpy as np

    voxel_ml = float(spacing[0] * spacing[1] * spacing[2]) / 1000.0
    # One comparison per label: np.bincount widens every voxel to 64 bits first (0.6 s on a
    # 512x512x240 CT, against 0.02 s a label), which a click cannot afford.
    return {str(label["name"]): float(np.count_nonzero(labels_zyx == int(label["value"]))) * voxel_ml
            for label in labels}


class AttentionUNetSegmentSceneLogic:
    """Builds and updates the result nodes of one CT in a MRML scene.

    `scene` defaults to `slicer.mrmlScene`, `segmentations_logic` to
    `slicer.modules.segmentations.logic()` (both only exist inside Slicer; tests pass their own).
    """

    def __init__(self, scene=None, segmentations_logic=None):
        self._scene = scene
        self._segmentations_logic = segmentations_logic

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    @property
    def segmentations_logic(self):
        if self._segmentations_logic is None:
            self._segmentations_logic = slicer.modules.segmentations.logic()
        return self._segmentations_logic

    # -- jobs ------------------------------------------------------------------------------------
    def create_job(self, volume_node, model_path=None, device="auto", overlap=DEFAULT_OVERLAP,
                   point_world_ras: Optional[Sequence[float]] = None, **job_kwargs) -> SegmentationJob:
        """A (not yet started) background job for `volume_node`; `point_world_ras` for click-to-segment."""
        from .volumes import volume_node_to_image, world_to_volume_ras

        image = volume_node_to_image(volume_node)
        point = world_to_volume_ras(volume_node, point_world_ras) if point_world_ras is not None else None
        return SegmentationJob(image, model_path=model_path, device=device, overlap=overlap,
                               point_ras=point, **job_kwargs)

    # -- nodes of a CT --------------------------------------------------------------------------
    def segmentation_node_for(self, volume_node):
        from . import nodes

        return nodes.segmentation_node_for(volume_node)

    def output_segmentation_for(self, volume_node, chosen=None):
        """The segmentation a run on `volume_node` updates: `chosen` unless it is another CT's result."""
        from . import nodes

        return nodes.output_segmentation_for(volume_node, chosen)

    def volume_shown_in_slice_views(self):
        """The CT a new parameter node starts with: the volume the slice views show (volumes.py)."""
        from .volumes import volume_shown_in_slice_views

        return volume_shown_in_slice_views(self.scene)

    def ct_question(self, image, name: str) -> str:
        """What the module asks before segmenting an image with `volumes.ct_warnings` (go on anyway?), or ""."""
        from .volumes import ct_warnings

        warnings = ct_warnings(image, name)
        return (_("This does not look like a CT in Hounsfield units:") + "\n\n" + "\n".join(warnings) + "\n\n"
                + _("Segment anyway?")) if warnings else ""

    def overlay_nodes_for(self, volume_node) -> dict[str, Any]:
        from . import nodes

        return nodes.overlay_nodes_for(volume_node)

    def gate_choices(self, volume_node) -> list[str]:
        """Overlays available for the CT: MAX_GATE first, then the gates in order."""
        names = self.overlay_nodes_for(volume_node)
        return ([MAX_GATE] if MAX_GATE in names else []) + sorted(n for n in names if n != MAX_GATE)

    def gate_items(self, volume_node) -> list[tuple[str, str]]:
        """The overlay menu of the CT: (label, choice) of `gate_choices`, then NO_OVERLAY (alone without a CT)."""
        choices = self.gate_choices(volume_node) if volume_node else []
        return [(_("Maximum over gates") if choice == MAX_GATE else
                 _("Gate {number}").format(number=choice.replace("gate", "")), choice)
                for choice in choices] + [(_("None (hide overlay)"), NO_OVERLAY)]

    def overlay_node_ids(self) -> list[str]:
        """IDs of every attention overlay in the scene (the input selector hides them)."""
        return [node.GetID() for node in collection_items(self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode"))
                if is_attention_overlay(node)]

    def attention_color_node(self):
        from . import display

        return display.attention_color_node(self.scene)

    # -- applying a result ------------------------------------------------------------------------
    def _check_output(self, volume_node, output: SegmentationOutput) -> None:
        from .volumes import check_input_volume, image_matches_volume_grid

        check_input_volume(volume_node)
        if volume_node.GetScene() is not self.scene:
            raise InputError(volume_node.GetName(), "was removed from the scene during the run; nothing was added")
        if not image_matches_volume_grid(output.labelmap, volume_node):
            raise InputError(volume_node.GetName(), "the segmentation result does not lie on this volume's "
                                                    "grid (was the volume changed during the run?)")
        for name, image in output.attention.items():
            if image.GetDimension() != 3 or min(image.GetSize()) < 1:
                raise InputError(volume_node.GetName(), f"attention map {name} is not a 3D image")

    def apply_result(self, volume_node, output: SegmentationOutput, segmentation_node=None,
                     show: bool = True, gate: str = MAX_GATE, opacity: float = DEFAULT_OPACITY,
                     surface: bool = True) -> AppliedResult:
        """Put `output` into the scene as one batch: segmentation + overlay nodes of `volume_node`.

        Re-uses the nodes of a previous run (found through node references on the CT, or the given
        `segmentation_node` unless it is another CT's result), so re-runs never duplicate nodes and
        one CT's run never overwrites another CT's result. Raises InputError, before touching
        the scene, if the labelmap does not lie on the CT's grid. Attention maps may lie on any grid.
        `surface=False` leaves the 3D surface out (the click mode builds it when it ends).
        """
        import SimpleITK as sitk

        from . import display, nodes

        self._check_output(volume_node, output)
        scene = self.scene
        labels = list(output.labels) or default_labels()
        labels_zyx = sitk.GetArrayViewFromImage(output.labelmap)
        volume_ml = _volumes_ml(labels_zyx, labels, volume_node.GetSpacing())
        color_node = self.attention_color_node() if output.attention else None

        scene.StartState(scene.BatchProcessState)
        try:
            # A result without maps (the click mode's "no clicks left") leaves the overlays alone.
            model = output.summary.get("model") or {}
            segmentation_node = nodes.update_segmentation(
                scene, self.segmentations_logic, volume_node, labels_zyx, labels, segmentation_node,
                str(model.get("path", "") if isinstance(model, dict) else model))
            overlay_nodes = nodes.update_overlays(
                scene, volume_node, output.attention,
                lambda node: display.configure_overlay_display(scene, node, color_node)) if output.attention else {}
        finally:
            scene.EndState(scene.BatchProcessState)
        # Outside the batch: Slicer's subject hierarchy plugins create items for new nodes on add.
        nodes.place_in_subject_hierarchy(scene, volume_node, segmentation_node, overlay_nodes)
        if show:
            display.show_segmentation(segmentation_node, surface)
            if overlay_nodes:
                shown = gate if gate in overlay_nodes or gate == NO_OVERLAY else MAX_GATE
                self.show_overlay(volume_node, shown, opacity)
        return AppliedResult(segmentation_node, overlay_nodes, volume_ml, dict(output.summary))

    def result_text(self, volume_node, applied: AppliedResult, seconds: float) -> str:
        """The module's Result line (`result_text`), and whether the CT is one frame of a 4D sequence."""
        from .sequences import frame_note

        note = frame_note(volume_node)
        return result_text(applied, seconds) + (f" {note}." if note else "")

    # -- overlays in the slice views ------------------------------------------------------------
    def slice_composite_nodes(self) -> list:
        from . import display

        return display.slice_composite_nodes(self.scene)

    def show_overlay(self, volume_node, gate: str = MAX_GATE, opacity: float = DEFAULT_OPACITY):
        from . import display

        return display.show_overlay(self.scene, volume_node, gate, opacity)

    def show_gate_if_made(self, volume_node, gate: str, opacity: float = DEFAULT_OPACITY) -> None:
        """The gate chosen in the menu shown, if the CT has its overlay (or NO_OVERLAY: none shown)."""
        if gate == NO_OVERLAY or gate in self.overlay_nodes_for(volume_node):
            self.show_overlay(volume_node, gate, opacity)

    @staticmethod
    def update_parameters_after(parameters, volume_node, applied: AppliedResult) -> None:
        """The module's parameter node after a result on `volume_node` was applied: its output is that
        result if the CT is still the input (a script may have switched it meanwhile); a gate the
        result has no overlay for falls back to the maximum over gates."""
        if parameters.inputVolume is volume_node:
            parameters.outputSegmentation = applied.segmentation_node
        if parameters.gate not in applied.overlay_nodes and parameters.gate != NO_OVERLAY:
            parameters.gate = MAX_GATE

    def set_overlay_opacity(self, volume_node, opacity: float) -> None:
        from . import display

        display.set_overlay_opacity(self.scene, volume_node, opacity)

    def shown_gate(self, volume_node) -> str:
        from . import display

        return display.shown_gate(self.scene, volume_node)


def result_text(applied: AppliedResult, seconds: float) -> str:
    """The module's Result line: volumes, time, device; an empty segment said in words (easy to
    miss in the views, and not to be read as "no pancreas")."""
    summary = applied.summary
    volumes = ", ".join(f"{name}: {ml:.1f} mL" for name, ml in applied.volume_ml.items())
    text = (f"{volumes}. Shown after {seconds:.1f} s on {summary.get('device', '?')} "
            f"({summary.get('precision', '?')}).")
    empty = [name for name, ml in applied.volume_ml.items() if ml <= 0.0]
    if empty:
        text += (f" Nothing was found for {', '.join(empty)}: the segment is empty (the model may not suit "
                 "this scan). The attention maps still show where the network looked.")
    return text
