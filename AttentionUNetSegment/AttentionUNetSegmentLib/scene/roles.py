"""Names the module gives its nodes: node reference roles on the CT, attributes, overlay choices.

The CT volume node is the anchor of a result: its segmentation and attention overlays are found
(and re-used on re-runs) through node references, and our own nodes carry attributes so that,
for example, the input selector can leave the overlays out.
"""

from __future__ import annotations

#: Node reference roles on the CT volume node.
SEGMENTATION_ROLE = "AttentionUNetSegment.Segmentation"
OVERLAY_ROLE_PREFIX = "AttentionUNetSegment.Attention."
#: Node attributes that mark our nodes.
GATE_ATTRIBUTE = "AttentionUNetSegment.Gate"
MODULE_ATTRIBUTE = "AttentionUNetSegment.Output"      # "segmentation", "attention", "include/exclude points"
OVERLAY_MARK = "attention"
COLOR_TABLE_ATTRIBUTE = "AttentionUNetSegment.ColorTable"
#: The click mode's two markups nodes of a CT (node reference roles on the CT), their marks
#: (MODULE_ATTRIBUTE) and the attribute holding each point's click number (click_point.py).
INCLUDE_POINTS_ROLE = "AttentionUNetSegment.IncludePoints"
EXCLUDE_POINTS_ROLE = "AttentionUNetSegment.ExcludePoints"
INCLUDE_POINTS_MARK = "include points"
EXCLUDE_POINTS_MARK = "exclude points"
CLICK_ORDER_ATTRIBUTE = "AttentionUNetSegment.ClickOrder"
#: Segment tag on the segments a run wrote (value: the model file): a later run replaces them,
#: segments without it are the user's and are kept.
WRITTEN_BY_TAG = "AttentionUNetSegment.Model"
#: Overlay choices besides the gate names.
MAX_GATE = "max"
NO_OVERLAY = "none"
COLOR_TABLE_NAME = "AttentionInferno"
#: Attention below this is not drawn (display threshold: the CT shows through where the network
#: paid no attention); the colour table file's alpha ramp ends at the same value.
OVERLAY_LOWER_THRESHOLD = 0.1
DEFAULT_OPACITY = 0.6


def is_attention_overlay(node) -> bool:
    """True for the overlay volumes this module made (they are scalar volumes, but not CTs)."""
    return node is not None and (node.GetAttribute(MODULE_ATTRIBUTE) == OVERLAY_MARK
                                 or bool(node.GetAttribute(GATE_ATTRIBUTE)))


def collection_items(collection) -> list:
    """The objects of a vtkCollection as a list."""
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
