"""The result nodes of one CT: its segmentation and its attention overlay volumes.

The segmentation lies exactly on the CT's grid. Each overlay keeps the grid its attention map
came on (the CT's, or a gate's own coarser grid): Slicer reslices every layer of a slice view in
physical space, so an overlay on any grid lands where it belongs. The "max over gates" overlay
lives on the finest gate grid, the others resampled onto it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from .roles import (
    GATE_ATTRIBUTE,
    MAX_GATE,
    MODULE_ATTRIBUTE,
    OVERLAY_MARK,
    OVERLAY_ROLE_PREFIX,
    SEGMENTATION_ROLE,
    WRITTEN_BY_TAG,
)
from .volumes import (
    array_view,
    image_ijk_to_ras,
    image_on_grid_of,
    set_voxels_on_grid_of,
    voxel_buffer,
    voxels_modified,
)


def _color_0_1(color) -> tuple[float, float, float]:
    values = [float(c) for c in color]
    if any(c > 1.0 for c in values):
        values = [c / 255.0 for c in values]
    return tuple(values)  # type: ignore[return-value]


def segmentation_node_for(volume_node):
    return volume_node.GetNodeReference(SEGMENTATION_ROLE) if volume_node is not None else None


def output_segmentation_for(volume_node, chosen=None):
    """The segmentation a run on `volume_node` writes into (None: a new one is made).

    One result per CT: the chosen node (the module's output selector) only when it is no other
    CT's result. The module keeps its last output selected, so after switching the input CT the
    chosen node is often the previous CT's result, which a run on this CT must never overwrite.
    """
    scene = volume_node.GetScene()
    if chosen is None or chosen.GetScene() is not scene or scene is None:
        return segmentation_node_for(volume_node)
    for index in range(scene.GetNumberOfNodes()):
        other = scene.GetNthNode(index)
        if other is not volume_node and other.GetNodeReference(SEGMENTATION_ROLE) is chosen:
            return segmentation_node_for(volume_node)
    return chosen


def overlay_nodes_for(volume_node) -> dict[str, Any]:
    """Gate name (and MAX_GATE) -> overlay volume node, through the CT's node references."""
    nodes: dict[str, Any] = {}
    if volume_node is None:
        return nodes
    for index in range(volume_node.GetNumberOfNodeReferenceRoles()):
        role = volume_node.GetNthNodeReferenceRole(index)
        if role.startswith(OVERLAY_ROLE_PREFIX):
            node = volume_node.GetNodeReference(role)
            if node is not None:
                nodes[role[len(OVERLAY_ROLE_PREFIX):]] = node
    return nodes


def _import_labels(scene, segmentations_logic, volume_node, segmentation_node,
                   labels_zyx: np.ndarray, labels: list[dict]) -> None:
    """Label values -> 1..N in the order of `labels`, imported into segments with fixed IDs, so a
    re-run replaces the content of the same segments (display settings survive)."""
    lut = np.zeros(256, dtype=np.uint8)
    segment_ids = vtk.vtkStringArray()
    for index, label in enumerate(labels):
        lut[int(label["value"])] = index + 1
        segment_ids.InsertNextValue(str(label["name"]))
    labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AttentionUNetSegment temporary")
    try:
        # The model's values are usually 1..N already (0.2 s of table look-up saved per click).
        in_order = all(int(label["value"]) == index + 1 for index, label in enumerate(labels))
        segment_values = labels_zyx if in_order and int(labels_zyx.max()) <= len(labels) else lut[labels_zyx]
        set_voxels_on_grid_of(labelmap_node, segment_values, volume_node)
        labelmap_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
        segmentation = segmentation_node.GetSegmentation()
        for index in range(segment_ids.GetNumberOfValues()):
            segment_id = segment_ids.GetValue(index)
            if segmentation.GetSegment(segment_id) is None:
                segmentation.AddEmptySegment(segment_id, segment_id)
        if not segmentations_logic.ImportLabelmapToSegmentationNode(labelmap_node, segmentation_node, segment_ids):
            raise RuntimeError("importing the labelmap into the segmentation failed")
    finally:
        scene.RemoveNode(labelmap_node)


def _remove_earlier_results(segmentation, keep: set[str]) -> None:
    """Segments an earlier run wrote that this run does not write (another model's labels): their
    contents would be stale. Segments without our tag are the user's and stay."""
    for index in reversed(range(segmentation.GetNumberOfSegments())):
        segment_id = segmentation.GetNthSegmentID(index)
        if segment_id not in keep and segmentation.GetSegment(segment_id).GetTag(WRITTEN_BY_TAG, vtk.reference("")):
            segmentation.RemoveSegment(segment_id)


def update_segmentation(scene, segmentations_logic, volume_node, labels_zyx: np.ndarray,
                        labels: list[dict], segmentation_node=None, model: str = ""):
    """Fill (or create) the CT's segmentation node with `labels_zyx`; names, colours, terminology.
    `segmentation_node`: the user's choice, used as `output_segmentation_for` decides."""
    segmentation_node = output_segmentation_for(volume_node, segmentation_node)
    if segmentation_node is None:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume_node.GetName()} pancreas")
    segmentation_node.SetAttribute(MODULE_ATTRIBUTE, "segmentation")
    volume_node.SetNodeReferenceID(SEGMENTATION_ROLE, segmentation_node.GetID())
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    _remove_earlier_results(segmentation_node.GetSegmentation(), {str(label["name"]) for label in labels})
    _import_labels(scene, segmentations_logic, volume_node, segmentation_node, labels_zyx, labels)

    segmentation = segmentation_node.GetSegmentation()
    tag = slicer.vtkSegment.GetTerminologyEntryTagName()
    for label in labels:
        segment = segmentation.GetSegment(str(label["name"]))
        segment.SetTag(WRITTEN_BY_TAG, model or "bundled")
        segment.SetName(str(label["name"]))
        segment.SetNameAutoGenerated(False)
        segment.SetColor(*_color_0_1(label["color"]))
        segment.SetColorAutoGenerated(False)
        if label.get("terminology"):
            segment.SetTag(tag, str(label["terminology"]))
    return segmentation_node


def _finest_grid(images: list[sitk.Image]) -> sitk.Image:
    return min(images, key=lambda image: float(np.prod(image.GetSpacing())))


def _on_grid(image: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """(z, y, x) values of `image` on `reference`'s grid (linear; 0 outside)."""
    same = (image.GetSize() == reference.GetSize()
            and np.allclose(image.GetSpacing(), reference.GetSpacing(), rtol=1e-6, atol=0)
            and np.allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=1e-6)
            and np.allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=1e-9))
    if same:
        return sitk.GetArrayViewFromImage(image)
    # A copy: a view of the temporary resampled image would outlive the image's memory.
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                sitk.sitkFloat32))


def _fill_overlay(node, name: str, attention: dict[str, sitk.Image]) -> None:
    """The overlay's voxels and grid: the gate's own, or the max over gates on the finest grid."""
    if name != MAX_GATE:
        image = attention[name]
        buffer = voxel_buffer(node, sitk.GetArrayViewFromImage(image).shape, np.float32, image_ijk_to_ras(image))
        buffer[...] = sitk.GetArrayViewFromImage(image)
    else:
        reference = _finest_grid(list(attention.values()))
        buffer = voxel_buffer(node, sitk.GetArrayViewFromImage(reference).shape, np.float32,
                              image_ijk_to_ras(reference))
        gates = [attention[gate] for gate in sorted(attention)]
        buffer[...] = _on_grid(gates[0], reference)  # computed in the node's own memory: no big temporaries
        for other in gates[1:]:
            np.maximum(buffer, _on_grid(other, reference), out=buffer)
    voxels_modified(node)


def _add_marked_node(scene, class_name: str, name: str, attributes: dict[str, str]):
    """A new node that carries its attributes before it enters the scene, so that whoever
    observes NodeAddedEvent (the module's input list) already sees what it is."""
    node = scene.CreateNodeByClass(class_name)
    node.UnRegister(None)  # the Python object holds the reference (as slicer.util does)
    node.SetName(name)
    for key, value in attributes.items():
        node.SetAttribute(key, value)
    return scene.AddNode(node)


def update_overlays(scene, volume_node, attention: dict[str, sitk.Image], configure_display) -> dict[str, Any]:
    """One overlay volume per gate plus MAX_GATE, re-using the CT's earlier ones; stale ones removed.

    `configure_display(node)` sets up each node's display before its voxels arrive (with a fixed
    0..1 window Slicer computes no histogram of them).
    """
    existing = overlay_nodes_for(volume_node)
    nodes: dict[str, Any] = {}
    for name in sorted(attention) + ([MAX_GATE] if attention else []):
        node = existing.pop(name, None)
        if node is None:
            title = "attention max over gates" if name == MAX_GATE else f"attention {name}"
            node = _add_marked_node(scene, "vtkMRMLScalarVolumeNode", f"{volume_node.GetName()} {title}",
                                    {MODULE_ATTRIBUTE: OVERLAY_MARK, GATE_ATTRIBUTE: name})
            volume_node.SetNodeReferenceID(OVERLAY_ROLE_PREFIX + name, node.GetID())
        node.SetAttribute(GATE_ATTRIBUTE, name)
        node.SetAttribute(MODULE_ATTRIBUTE, OVERLAY_MARK)
        configure_display(node)
        _fill_overlay(node, name, attention)
        node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
        nodes[name] = node
    for name, stale in existing.items():  # gates of an earlier model that this one lacks
        volume_node.RemoveNodeReferenceIDs(OVERLAY_ROLE_PREFIX + name)
        scene.RemoveNode(stale)
    return nodes


def place_in_subject_hierarchy(scene, volume_node, segmentation_node, overlay_nodes: dict[str, Any]) -> None:
    """Segmentation next to the CT; overlays in a folder "<CT> attention maps" next to it."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    ct_item = sh.GetItemByDataNode(volume_node) if sh is not None else 0
    if not ct_item:
        return  # the CT is not in the hierarchy (scripts, headless): nothing to be next to
    parent = sh.GetItemParent(ct_item)

    def put(node, parent_item):
        item = sh.GetItemByDataNode(node)
        if not item:
            sh.CreateItem(parent_item, node)
        elif sh.GetItemParent(item) != parent_item:
            sh.SetItemParent(item, parent_item)

    put(segmentation_node, parent)
    if overlay_nodes:
        folder_name = f"{volume_node.GetName()} attention maps"
        folder = sh.GetItemChildWithName(parent, folder_name) or sh.CreateFolderItem(parent, folder_name)
        for name in [MAX_GATE] + sorted(n for n in overlay_nodes if n != MAX_GATE):
            if name in overlay_nodes:
                put(overlay_nodes[name], folder)


def segment_labelmap(scene, segmentations_logic, segmentation_node, segment_id: str, volume_node):
    """The segment `segment_id` as a 0/1 SimpleITK labelmap on the CT's grid, or None when the
    segmentation has no such segment or it is empty (what the click mode refines from)."""
    if segmentation_node is None or segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        return None
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AttentionUNetSegment temporary")
    try:
        if not segmentations_logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap_node, volume_node):
            raise RuntimeError(f"exporting segment {segment_id} failed")
        if labelmap_node.GetImageData() is None:
            return None
        # The export lies on the CT's grid; volume_node_to_image would refuse a labelmap node.
        array = (array_view(labelmap_node) > 0).astype(np.uint8)
        image = image_on_grid_of(array, labelmap_node)
    finally:
        scene.RemoveNode(labelmap_node)
    return image if array.any() else None
