"""A real MRML scene as Slicer sets it up (slicer-core wheel), and CT-like test images.

Plain helpers (no pytest, no torch), so a child process can use them too (see
test_module_file.py, where the self-test runs in a Python that cannot import torch).
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from AttentionUNetSegmentLib.core.labels import PANCREAS
from AttentionUNetSegmentLib.scene.logic import AttentionUNetSegmentSceneLogic
from AttentionUNetSegmentLib.scene.results import SegmentationOutput
from AttentionUNetSegmentLib.scene.volumes import image_to_volume_node

PANCREAS_RGB = (249 / 255, 180 / 255, 111 / 255)
# matplotlib's inferno at 1.0 and at 128/255 (8-bit): what the overlay must show.
INFERNO_TOP = np.array([252, 255, 164])
INFERNO_MIDDLE = np.array([188, 55, 84])


class Mrml:
    """A scene with the logic classes Slicer would have set up, and the Red slice view."""

    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.color_logic = slicer.vtkMRMLColorLogic()
        self.color_logic.SetMRMLScene(self.scene)
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.SetModuleLogic("Colors", self.color_logic)
        self.volumes_logic = slicer.vtkSlicerVolumesLogic()
        self.volumes_logic.SetMRMLApplicationLogic(self.app_logic)
        self.volumes_logic.SetMRMLScene(self.scene)
        self.segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentations_logic.SetMRMLScene(self.scene)
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        self.slice_logic = slicer.vtkMRMLSliceLogic()
        self.slice_logic.SetMRMLScene(self.scene)
        self.slice_node = self.slice_logic.AddSliceNode("Red")
        self.composite = self.slice_logic.GetSliceCompositeNode()
        self.logic = AttentionUNetSegmentSceneLogic(self.scene, self.segmentations_logic)
        self.sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)

    def add_ct(self, image: sitk.Image, name: str = "CT", study: bool = True):
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        image_to_volume_node(image, node)
        node.CreateDefaultDisplayNodes()
        if study:  # what Slicer's subject hierarchy plugins do when a CT is loaded
            patient = self.sh.CreateSubjectItem(self.sh.GetSceneItemID(), "Patient")
            self.study_item = self.sh.CreateStudyItem(patient, "Study")
            self.sh.CreateItem(self.study_item, node)
        return node

    def node_ids(self) -> list[str]:
        return [self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())]


def grid(direction, spacing=(0.8, 1.1, 2.5), origin=(12.5, -40.25, 97.0), size=(40, 36, 18),
         pixel=sitk.sitkInt16) -> sitk.Image:
    image = sitk.Image(list(size), pixel)
    image.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=float).ravel()))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def oblique() -> np.ndarray:
    a, b = math.radians(20), math.radians(-12)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


DIRECTIONS = {
    "LPS identity": np.eye(3),
    "RAS (diag -1 -1 1)": np.diag([-1.0, -1.0, 1.0]),
    "permuted left-handed": np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float),
    "oblique": oblique(),
}


def phantom_ct(direction) -> sitk.Image:
    """A CT-like volume (HU) with an ellipsoidal 'organ' on the given grid."""
    image = grid(direction)
    z, y, x = np.mgrid[0:18, 0:36, 0:40]
    organ = ((x - 22) / 9.0) ** 2 + ((y - 15) / 7.0) ** 2 + ((z - 8) / 4.0) ** 2 < 1
    array = np.where(organ, 40, -1000).astype(np.int16) + (x % 7).astype(np.int16)
    array[:, :, :2] = 500  # a strip of bone
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def labels_like(ct: sitk.Image, center=(8, 15, 22), radii=(4, 7, 9)) -> sitk.Image:
    z, y, x = np.indices(sitk.GetArrayViewFromImage(ct).shape)
    inside = sum(((v - c) / r) ** 2 for v, c, r in zip((z, y, x), center, radii)) < 1
    out = sitk.GetImageFromArray(inside.astype(np.uint8))
    out.CopyInformation(ct)
    return out


def attention_like(ct: sitk.Image, seed: int = 0) -> dict[str, sitk.Image]:
    shape = sitk.GetArrayViewFromImage(ct).shape
    rng = np.random.default_rng(seed)
    maps = {}
    for gate in ("gate2", "gate3", "gate4"):
        image = sitk.GetImageFromArray(rng.random(shape).astype(np.float32))
        image.CopyInformation(ct)
        maps[gate] = image
    return maps


def output_like(ct: sitk.Image, seed: int = 0, **label_kwargs) -> SegmentationOutput:
    return SegmentationOutput(labels_like(ct, **label_kwargs), attention_like(ct, seed),
                              [PANCREAS.to_dict()], {"device": "cpu", "precision": "fp32"})


def export_segment(mrml: Mrml, segmentation_node, reference_node, segment_id="Pancreas"):
    labelmap = mrml.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert mrml.segmentations_logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_node)
    return labelmap


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def terminology(segment) -> str:
    value = vtk.reference("")
    segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), value)
    return str(value)
