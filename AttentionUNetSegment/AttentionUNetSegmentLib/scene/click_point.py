"""Click-to-segment on the MRML side: the point node, place mode, and the one point kept.

The markups widget adds the clicked point inside its PlacePoint and still uses the point's index
after the PointPositionDefinedEvent, so the module only notes the point there (`placed_point`:
its ID stays valid when indices shift) and calls `keep_only_point` after the event returned.
"""

from __future__ import annotations

from typing import Optional


def create_point_node(scene, name: str):
    """The click point's markups node: one cyan point, a little larger than default."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetSelectedColor(0.0, 0.9, 1.0)
    node.GetDisplayNode().SetGlyphScale(2.0)
    return node


def set_place_mode(app_logic, node, enabled: bool) -> None:
    """Enter single-point place mode for `node`, or leave place mode."""
    interaction = app_logic.GetInteractionNode() if app_logic else None
    if interaction is None:
        return
    if enabled:
        selection = app_logic.GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(0)
        interaction.SetCurrentInteractionMode(interaction.Place)
    elif interaction.GetCurrentInteractionMode() == interaction.Place:
        interaction.SetCurrentInteractionMode(interaction.ViewTransform)


def is_placing(app_logic, node) -> bool:
    """True while the views are in place mode for `node`."""
    interaction = app_logic.GetInteractionNode()
    return (node is not None and interaction.GetCurrentInteractionMode() == interaction.Place
            and app_logic.GetSelectionNode().GetActivePlaceNodeID() == node.GetID())


def placed_point(node, index: Optional[int]) -> tuple[str, list[float]]:
    """(ID, world position) of the point the event reports (`index`; the last point if unknown)."""
    if index is None or index < 0 or index >= node.GetNumberOfControlPoints():
        index = node.GetNumberOfControlPoints() - 1
    position = [0.0, 0.0, 0.0]
    node.GetNthControlPointPositionWorld(index, position)
    return node.GetNthControlPointID(index), position


def keep_only_point(node, point_id: str) -> None:
    """Remove every control point but `point_id` (one click point: the newest)."""
    for index in reversed(range(node.GetNumberOfControlPoints())):
        if node.GetNthControlPointID(index) != point_id:
            node.RemoveNthControlPoint(index)
