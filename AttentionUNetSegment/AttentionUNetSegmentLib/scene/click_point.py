"""The click mode's points on the MRML side: two markups nodes per CT (include, exclude), the
order of the clicks across both, and place mode.

Each CT finds its own two nodes through node references (roles.INCLUDE_POINTS_ROLE,
roles.EXCLUDE_POINTS_ROLE), so switching CTs never mixes their clicks. The order of the clicks
is a sequence number per control point, kept in a node attribute (point ID -> number, saved
with the scene): Undo removes the highest number, whichever node holds it. Points that arrive
without a number (placed with the Markups toolbar, or before a scene was saved) get the next
numbers, include node first, in index order.

Nothing here runs inside a markups event: the markups widget's PlacePoint still uses the new
point's index after PointPositionDefinedEvent, so the mode only notes that something changed
there and numbers, labels or removes points later (`ClickPoints.sync`, from the poll).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

from ..core.options import Click
from .roles import (
    CLICK_ORDER_ATTRIBUTE,
    EXCLUDE_POINTS_MARK,
    EXCLUDE_POINTS_ROLE,
    INCLUDE_POINTS_MARK,
    INCLUDE_POINTS_ROLE,
    MODULE_ATTRIBUTE,
)
from .volumes import world_to_volume_ras

#: Include points green, exclude points red (what the eye reads as "yes" and "no").
INCLUDE_COLOR = (0.2, 0.85, 0.3)
EXCLUDE_COLOR = (0.95, 0.25, 0.2)


def _create_points_node(scene, name: str, color, mark: str):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.SetAttribute(MODULE_ATTRIBUTE, mark)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetSelectedColor(*color)
    display.SetColor(*color)
    display.SetGlyphScale(2.0)
    return node


def points_nodes_for(scene, volume_node, create: bool = True) -> tuple:
    """The CT's (include, exclude) markups nodes, created on first use (None when not `create`)."""
    found = []
    for role, suffix, color, mark in ((INCLUDE_POINTS_ROLE, "include", INCLUDE_COLOR, INCLUDE_POINTS_MARK),
                                      (EXCLUDE_POINTS_ROLE, "exclude", EXCLUDE_COLOR, EXCLUDE_POINTS_MARK)):
        node = volume_node.GetNodeReference(role)
        if node is None and create:
            node = _create_points_node(scene, f"{volume_node.GetName()} pancreas {suffix}", color, mark)
            volume_node.SetNodeReferenceID(role, node.GetID())
        found.append(node)
    return tuple(found)


class ClickPoints:
    """The ordered clicks of one CT's two markups nodes."""

    def __init__(self, volume_node, include_node, exclude_node):
        self.volume_node, self.include_node, self.exclude_node = volume_node, include_node, exclude_node

    @property
    def nodes(self) -> tuple:
        return self.include_node, self.exclude_node

    @staticmethod
    def _order(node) -> dict[str, int]:
        try:
            order = json.loads(node.GetAttribute(CLICK_ORDER_ATTRIBUTE) or "{}")
        except ValueError:
            return {}
        return {str(k): int(v) for k, v in order.items()} if isinstance(order, dict) else {}

    def _defined(self, node) -> list[tuple[int, str]]:
        """(index, ID) of the points whose position is defined (not a preview being placed)."""
        return [(i, node.GetNthControlPointID(i)) for i in range(node.GetNumberOfControlPoints())
                if node.GetNthControlPointPositionStatus(i) == node.PositionDefined]

    def sync(self, arrivals: Sequence[tuple[object, str]] = ()) -> None:
        """Number the points that have no number yet (those in `arrivals`, (node, point ID) in the
        order they were placed, first), forget removed ones, label each point with its number;
        a node is changed only where something differs (each change fires events)."""
        orders = [self._order(node) for node in self.nodes]
        defined = [self._defined(node) for node in self.nodes]
        kept = [{pid: order[pid] for _, pid in points if pid in order} for order, points in zip(orders, defined)]
        next_number = max([0] + [n for order in kept for n in order.values()]) + 1
        new = [(node, pid) for node, pid in arrivals if node in self.nodes]
        new += [(node, pid) for node, points in zip(self.nodes, defined) for _, pid in points]
        for node, pid in new:
            numbers = kept[self.nodes.index(node)]
            if pid not in numbers and any(pid == p for _, p in defined[self.nodes.index(node)]):
                numbers[pid], next_number = next_number, next_number + 1
        for node, order, numbers, points in zip(self.nodes, orders, kept, defined):
            if numbers != order:
                node.SetAttribute(CLICK_ORDER_ATTRIBUTE, json.dumps(numbers))
            for index, pid in points:
                label = str(numbers[pid])
                if node.GetNthControlPointLabel(index) != label:
                    node.SetNthControlPointLabel(index, label)

    def ordered(self) -> list[tuple[int, object, int]]:
        """(number, node, index) of every numbered point, in click order."""
        items = []
        for node in self.nodes:
            order = self._order(node)
            items += [(order[pid], node, index) for index, pid in self._defined(node) if pid in order]
        return sorted(items, key=lambda item: item[0])

    def clicks(self) -> tuple[Click, ...]:
        """The clicks in order, in the CT volume's own RAS (its parent transform undone)."""
        out = []
        for _, node, index in self.ordered():
            position = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(index, position)
            out.append(Click(world_to_volume_ras(self.volume_node, position), node is self.include_node))
        return tuple(out)

    def remove_last(self) -> bool:
        """Undo: remove the newest click, whichever node holds it; False when there is none."""
        self.sync()
        items = self.ordered()
        if not items:
            return False
        _, node, index = items[-1]
        node.RemoveNthControlPoint(index)
        return True

    def remove_numbers(self, numbers) -> None:
        """Remove the points with these click numbers."""
        doomed = [(node, node.GetNthControlPointID(index)) for number, node, index in self.ordered()
                  if number in set(numbers)]
        for node, pid in doomed:                  # by ID: indices shift as points go
            node.RemoveNthControlPoint(node.GetNthControlPointIndexByID(pid))

    def remove_all(self) -> None:
        for node in self.nodes:
            node.RemoveAllControlPoints()
            node.SetAttribute(CLICK_ORDER_ATTRIBUTE, "{}")


def enter_place_mode(app_logic, node) -> None:
    """Persistent place mode for `node`: each click in a slice view adds a point to it."""
    interaction = app_logic.GetInteractionNode() if app_logic else None
    if interaction is None:
        return
    selection = app_logic.GetSelectionNode()
    selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
    selection.SetActivePlaceNodeID(node.GetID())
    interaction.SetPlaceModePersistence(1)
    interaction.SetCurrentInteractionMode(interaction.Place)


def leave_place_mode(app_logic, nodes) -> None:
    """Stop placing into any of `nodes`: place mode off and none of them the active place node
    (else the Markups toolbar would go on placing into it, outside the click mode: issue 19).
    Placing into another node (the user's own markups) is left alone."""
    interaction = app_logic.GetInteractionNode() if app_logic else None
    selection = app_logic.GetSelectionNode() if app_logic else None
    if interaction is None or selection is None:
        return
    if selection.GetActivePlaceNodeID() not in [n.GetID() for n in nodes if n is not None]:
        return
    if interaction.GetCurrentInteractionMode() == interaction.Place:
        interaction.SetPlaceModePersistence(0)
        interaction.SetCurrentInteractionMode(interaction.ViewTransform)
    selection.SetActivePlaceNodeID(None)


def is_placing(app_logic, node: Optional[object]) -> bool:
    """True while the views are in place mode for `node`."""
    interaction = app_logic.GetInteractionNode()
    return (node is not None and interaction.GetCurrentInteractionMode() == interaction.Place
            and app_logic.GetSelectionNode().GetActivePlaceNodeID() == node.GetID())
