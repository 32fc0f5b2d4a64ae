"""How results are shown: the overlay colour table and display, the slice views' layers, 3D.

Switching gate or opacity changes display settings only (instant, no re-run).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
from vtk.util import numpy_support

from ..files.resources import attention_color_table_path
from .nodes import overlay_nodes_for
from .roles import (
    COLOR_TABLE_ATTRIBUTE,
    COLOR_TABLE_NAME,
    DEFAULT_OPACITY,
    MAX_GATE,
    NO_OVERLAY,
    OVERLAY_LOWER_THRESHOLD,
    collection_items,
)

logger = logging.getLogger(__name__)


# Colour table of the overlays: Resources/ColorTables/AttentionInferno.txt, made from matplotlib's
# inferno by reports.figures.attention_color_table_text() (a test keeps the two equal). Read here
# rather than computed so that Slicer needs no plotting library.
def attention_color_table(path: Optional[os.PathLike | str] = None) -> np.ndarray:
    """(256, 4) uint8 RGBA from the colour table file (`index name R G B A` lines)."""
    rows = [line.split() for line in Path(path or attention_color_table_path()).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    return np.array([[int(v) for v in row[2:6]] for row in rows], dtype=np.uint8)


def attention_color_node(scene):
    """The shared inferno colour table node (created once per scene)."""
    for node in collection_items(scene.GetNodesByClass("vtkMRMLColorTableNode")):
        if node.GetAttribute(COLOR_TABLE_ATTRIBUTE) == "inferno":
            return node
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOR_TABLE_NAME)
    node.SetTypeToUser()
    node.SetAttribute(COLOR_TABLE_ATTRIBUTE, "inferno")
    table = attention_color_table()
    node.SetNumberOfColors(len(table))
    for index, (r, g, b, a) in enumerate(table):
        node.SetColor(index, f"attention{index / 255:.3f}", r / 255.0, g / 255.0, b / 255.0, a / 255.0)
    node.SetDescription("Attention coefficients 0..1 (inferno; low values transparent)")
    return node


def configure_overlay_display(scene, node, color_node) -> None:
    """Inferno, fixed 0..1 window, values under the threshold not drawn, smooth interpolation."""
    display = node.GetDisplayNode()
    if display is None:
        display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        node.SetAndObserveDisplayNodeID(display.GetID())
    was_modifying = display.StartModify()
    display.SetAndObserveColorNodeID(color_node.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.AutoThresholdOff()
    display.SetLowerThreshold(OVERLAY_LOWER_THRESHOLD)
    display.SetUpperThreshold(1.0e6)
    display.ApplyThresholdOn()
    display.SetInterpolate(1)
    display.EndModify(was_modifying)


def show_segmentation(segmentation_node, surface: bool = True) -> None:
    """2D fill and outline, and (with `surface`) the 3D surface as the "Show 3D" button makes it."""
    display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetVisibility(True)
        display.SetVisibility2DFill(True)
        display.SetVisibility2DOutline(True)
    if surface:
        show_surface(segmentation_node)


def drop_surface(segmentation_node) -> None:
    """Remove the 3D surface: while it exists, Slicer rebuilds it after every change of the voxels
    (0.2 s on a 512x512 CT), which the click mode cannot afford after every click."""
    if segmentation_node is not None:
        segmentation_node.RemoveClosedSurfaceRepresentation()


def show_surface(segmentation_node) -> None:
    """The 3D surface, as the "Show 3D" button makes it."""
    # Needs the surface converters (registered by the segmentations logic); skipped where missing.
    try:
        segmentation_node.CreateClosedSurfaceRepresentation()
    except Exception:  # noqa: BLE001
        logger.warning("could not create the 3D surface of %s", segmentation_node.GetName())


def slice_composite_nodes(scene) -> list:
    return collection_items(scene.GetNodesByClass("vtkMRMLSliceCompositeNode"))


def show_overlay(scene, volume_node, gate: str = MAX_GATE, opacity: float = DEFAULT_OPACITY) -> Optional[Any]:
    """Show one attention map (a gate name, MAX_GATE, or NO_OVERLAY) over the CT in every slice
    view, at `opacity`. Returns the node shown."""
    overlays = overlay_nodes_for(volume_node)
    shown = None if gate == NO_OVERLAY else overlays.get(gate)
    if gate != NO_OVERLAY and shown is None:
        raise KeyError(f"no attention map '{gate}' for {volume_node.GetName()}; have {sorted(overlays)}")
    our_ids = {node.GetID() for node in overlays.values()}
    for composite in slice_composite_nodes(scene):
        was_modifying = composite.StartModify()
        if shown is not None:
            composite.SetBackgroundVolumeID(volume_node.GetID())
            composite.SetForegroundVolumeID(shown.GetID())
            composite.SetForegroundOpacity(float(opacity))
        elif composite.GetForegroundVolumeID() in our_ids:
            composite.SetForegroundVolumeID(None)
        composite.EndModify(was_modifying)
    return shown


def set_overlay_opacity(scene, volume_node, opacity: float) -> None:
    """Change the opacity of our overlay in every slice view that shows one of them."""
    our_ids = {node.GetID() for node in overlay_nodes_for(volume_node).values()}
    for composite in slice_composite_nodes(scene):
        if composite.GetForegroundVolumeID() in our_ids:
            composite.SetForegroundOpacity(float(opacity))


def shown_gate(scene, volume_node) -> str:
    """The overlay currently shown in the first slice view showing one (NO_OVERLAY if none)."""
    by_id = {node.GetID(): name for name, node in overlay_nodes_for(volume_node).items()}
    for composite in slice_composite_nodes(scene):
        if composite.GetForegroundVolumeID() in by_id:
            return by_id[composite.GetForegroundVolumeID()]
    return NO_OVERLAY


def slice_view_rgba(slice_logic) -> Optional[np.ndarray]:
    """What a slice view shows of its volume layers (background, foreground with its opacity and
    per-voxel alpha, label layer), blended by Slicer's own reslice-and-blend pipeline, as an
    (H, W, 4) uint8 array with row 0 at the top. None when the view shows nothing.

    Works without a render window (headless); segmentations and markups are drawn by displayable
    managers and are not part of it.
    """
    connection = slice_logic.GetImageDataConnection()
    if connection is None:
        return None
    producer = connection.GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(connection.GetIndex())
    if image is None or image.GetPointData().GetScalars() is None:
        return None
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return np.ascontiguousarray(pixels.reshape(height, width, -1)[::-1])
