"""The Slicer module's scene logic against Slicer's real MRML library (the `slicer-core` wheel).

Everything a user sees in the scene is checked on a real `vtkMRMLScene`: geometry of volume
nodes (LPS, RAS, permuted, oblique), the segment exactly on the CT grid with terminology and
colour, the attention overlays and their display, node re-use on re-runs, the background job
(the real `segment` command with a tiny model), cancel and failure leaving the scene as it was,
`.seg.nrrd` written from the scene read back by slicerio, and the blended slice view.
VTK errors are routed to a string window; any "ERROR:" fails the test.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import time
import types
import unittest
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from AttentionUNetSegmentLib.core.errors import InputError  # noqa: E402
from AttentionUNetSegmentLib.core.labels import PANCREAS  # noqa: E402

# matplotlib's inferno at 1.0 and at 128/255 (8-bit): what the overlay must show.
INFERNO_TOP = np.array([252, 255, 164])
INFERNO_MIDDLE = np.array([188, 55, 84])
from AttentionUNetSegmentLib.slicer import scene as ss  # noqa: E402

PANCREAS_RGB = (249 / 255, 180 / 255, 111 / 255)


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def vtk_errors():
    """Collect VTK/MRML messages; a test fails if any error was logged."""
    window = vtk.vtkStringOutputWindow()
    previous = vtk.vtkOutputWindow.GetInstance()
    vtk.vtkOutputWindow.SetInstance(window)
    yield window
    vtk.vtkOutputWindow.SetInstance(previous)
    assert "ERROR:" not in window.GetOutput(), window.GetOutput()


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
        self.logic = ss.AttentionUNetSegmentSceneLogic(self.scene, self.segmentations_logic)
        self.sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)

    def add_ct(self, image: sitk.Image, name: str = "CT", study: bool = True):
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        ss.image_to_volume_node(image, node)
        node.CreateDefaultDisplayNodes()
        if study:  # what Slicer's subject hierarchy plugins do when a CT is loaded
            patient = self.sh.CreateSubjectItem(self.sh.GetSceneItemID(), "Patient")
            self.study_item = self.sh.CreateStudyItem(patient, "Study")
            self.sh.CreateItem(self.study_item, node)
        return node

    def node_ids(self) -> list[str]:
        return [self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())]


@pytest.fixture
def mrml(monkeypatch):
    state = Mrml()
    monkeypatch.setattr(slicer, "mrmlScene", state.scene, raising=False)
    return state


def _grid(direction, spacing=(0.8, 1.1, 2.5), origin=(12.5, -40.25, 97.0), size=(40, 36, 18),
          pixel=sitk.sitkInt16) -> sitk.Image:
    image = sitk.Image(list(size), pixel)
    image.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=float).ravel()))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _oblique() -> np.ndarray:
    a, b = math.radians(20), math.radians(-12)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


DIRECTIONS = {
    "LPS identity": np.eye(3),
    "RAS (diag -1 -1 1)": np.diag([-1.0, -1.0, 1.0]),
    "permuted left-handed": np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float),
    "oblique": _oblique(),
}


def _phantom_ct(direction) -> sitk.Image:
    """A CT-like volume (HU) with an ellipsoidal 'organ' on the given grid."""
    image = _grid(direction)
    z, y, x = np.mgrid[0:18, 0:36, 0:40]
    organ = ((x - 22) / 9.0) ** 2 + ((y - 15) / 7.0) ** 2 + ((z - 8) / 4.0) ** 2 < 1
    array = np.where(organ, 40, -1000).astype(np.int16) + (x % 7).astype(np.int16)
    array[:, :, :2] = 500  # a strip of bone
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _labels_like(ct: sitk.Image, center=(8, 15, 22), radii=(4, 7, 9)) -> sitk.Image:
    z, y, x = np.indices(sitk.GetArrayViewFromImage(ct).shape)
    inside = sum(((v - c) / r) ** 2 for v, c, r in zip((z, y, x), center, radii)) < 1
    out = sitk.GetImageFromArray(inside.astype(np.uint8))
    out.CopyInformation(ct)
    return out


def _attention_like(ct: sitk.Image, seed: int = 0) -> dict[str, sitk.Image]:
    shape = sitk.GetArrayViewFromImage(ct).shape
    rng = np.random.default_rng(seed)
    maps = {}
    for gate in ("gate2", "gate3", "gate4"):
        values = rng.random(shape).astype(np.float32)
        image = sitk.GetImageFromArray(values)
        image.CopyInformation(ct)
        maps[gate] = image
    return maps


def _output(ct: sitk.Image, seed: int = 0, **label_kwargs) -> ss.SegmentationOutput:
    return ss.SegmentationOutput(_labels_like(ct, **label_kwargs), _attention_like(ct, seed),
                                 [PANCREAS.to_dict()], {"device": "cpu", "precision": "fp32"})


def _export_segment(mrml: Mrml, segmentation_node, reference_node, segment_id="Pancreas"):
    labelmap = mrml.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert mrml.segmentations_logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_node)
    return labelmap


def _ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _terminology(segment) -> str:
    value = vtk.reference("")
    segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), value)
    return str(value)


# ----------------------------------------------------------------------------------------------
# Volume node <-> SimpleITK geometry
# ----------------------------------------------------------------------------------------------

def test_real_ct_loaded_by_slicer_converts_exactly(mrml, real_ct_path):
    node = mrml.volumes_logic.AddArchetypeVolume(str(real_ct_path), "ct")
    assert node is not None
    image = ss.volume_node_to_image(node)
    reference = sitk.ReadImage(str(real_ct_path))
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference))
    assert ss.same_grid(reference, node)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_geometry_round_trip_and_voxel_positions(mrml, name):
    image = _phantom_ct(DIRECTIONS[name])
    node = mrml.add_ct(image, study=False)
    ijk_to_ras = _ijk_to_ras(node)
    # Independent of our conversion: each voxel centre in RAS is SimpleITK's LPS point flipped.
    for index in [(0, 0, 0), (39, 0, 0), (0, 35, 0), (0, 0, 17), (7, 20, 11)]:
        ras = ijk_to_ras @ np.array([*index, 1.0])
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    back = ss.volume_node_to_image(node)
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def test_input_checks_give_one_line_messages(mrml):
    with pytest.raises(InputError, match="no input volume"):
        ss.check_input_volume(None)
    labelmap = mrml.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    slicer.util.updateVolumeFromArray(labelmap, np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="labels: is not a CT volume"):
        ss.check_input_volume(labelmap)
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="empty: has no voxels"):
        ss.check_input_volume(empty)
    flat = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "flat")
    slicer.util.updateVolumeFromArray(flat, np.zeros((1, 8, 8), np.int16))
    with pytest.raises(InputError, match="flat: is a single slice"):
        ss.check_input_volume(flat)
    rgb = mrml.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    slicer.util.updateVolumeFromArray(rgb, np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="photo: .*3 components"):
        ss.check_input_volume(rgb)
    mr = _grid(np.eye(3), pixel=sitk.sitkFloat32) + 300.0
    warnings = ss.ct_warnings(mr, "MR")
    assert warnings and all(w.startswith("MR: ") and "\n" not in w for w in warnings)
    assert ss.ct_warnings(_phantom_ct(np.eye(3)), "CT") == []


# ----------------------------------------------------------------------------------------------
# Segmentation node
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["RAS (diag -1 -1 1)", "permuted left-handed", "oblique"])
def test_segment_lies_exactly_on_the_ct_grid(mrml, name):
    ct_image = _phantom_ct(DIRECTIONS[name])
    ct = mrml.add_ct(ct_image)
    output = _output(ct_image)
    applied = mrml.logic.apply_result(ct, output)

    exported = _export_segment(mrml, applied.segmentation_node, ct)
    np.testing.assert_allclose(_ijk_to_ras(exported), _ijk_to_ras(ct), atol=1e-9)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(exported),
                                  sitk.GetArrayViewFromImage(output.labelmap))
    voxel_ml = np.prod(ct_image.GetSpacing()) / 1000.0
    assert applied.volume_ml["Pancreas"] == pytest.approx(
        sitk.GetArrayViewFromImage(output.labelmap).sum() * voxel_ml)


def test_segment_name_terminology_colour_surface_and_place(mrml):
    ct_image = _phantom_ct(DIRECTIONS["oblique"])
    ct = mrml.add_ct(ct_image, name="Abdomen CT")
    applied = mrml.logic.apply_result(ct, _output(ct_image))
    node = applied.segmentation_node
    assert node.GetName() == "Abdomen CT pancreas"
    assert ct.GetNodeReference(ss.SEGMENTATION_ROLE) is node
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetSegment("Pancreas")
    assert segment.GetName() == "Pancreas"
    assert not segment.GetNameAutoGenerated() and not segment.GetColorAutoGenerated()
    np.testing.assert_allclose(segment.GetColor(), PANCREAS_RGB, atol=1e-9)
    terminology = _terminology(segment)
    assert "SCT^15776009^Pancreas" in terminology and "SCT^123037004^Anatomical Structure" in terminology
    # Shown in 2D and as a 3D surface.
    assert node.GetDisplayNode().GetVisibility() and node.GetDisplayNode().GetVisibility2DFill()
    surface_name = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    assert segmentation.ContainsRepresentation(surface_name)
    assert segment.GetRepresentation(surface_name).GetNumberOfPoints() > 0
    # Next to the CT in the subject hierarchy; the overlays in a folder beside it.
    sh = mrml.sh
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == mrml.study_item
    folder = sh.GetItemParent(sh.GetItemByDataNode(applied.overlay_nodes["gate2"]))
    assert sh.GetItemName(folder) == "Abdomen CT attention maps"
    assert sh.GetItemParent(folder) == mrml.study_item


def test_results_follow_the_ct_transform_and_clicks_map_to_ct_space(mrml):
    ct_image = _phantom_ct(DIRECTIONS["RAS (diag -1 -1 1)"])
    ct = mrml.add_ct(ct_image)
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)
    matrix.SetElement(2, 3, -5.0)
    transform.SetMatrixTransformToParent(matrix)
    ct.SetAndObserveTransformNodeID(transform.GetID())
    assert ss.world_to_volume_ras(ct, (1.0, 2.0, 3.0)) == pytest.approx((-9.0, 2.0, 8.0))
    applied = mrml.logic.apply_result(ct, _output(ct_image))
    assert applied.segmentation_node.GetTransformNodeID() == transform.GetID()
    assert all(n.GetTransformNodeID() == transform.GetID() for n in applied.overlay_nodes.values())


def test_result_off_the_ct_grid_is_refused_without_touching_the_scene(mrml):
    ct_image = _phantom_ct(np.eye(3))
    ct = mrml.add_ct(ct_image)
    other = _grid(np.eye(3), origin=(0.0, 0.0, 0.0))
    before = mrml.node_ids()
    with pytest.raises(InputError, match="does not lie on this volume's grid"):
        mrml.logic.apply_result(ct, ss.SegmentationOutput(_labels_like(other), {}, [PANCREAS.to_dict()]))
    assert mrml.node_ids() == before
    mrml.scene.RemoveNode(ct)                  # the user deleted the CT while the job ran
    before = mrml.node_ids()
    with pytest.raises(InputError, match="CT: was removed from the scene"):
        mrml.logic.apply_result(ct, _output(ct_image))
    assert mrml.node_ids() == before


# ----------------------------------------------------------------------------------------------
# Overlays
# ----------------------------------------------------------------------------------------------

def test_overlays_values_colour_table_and_display(mrml):
    ct_image = _phantom_ct(DIRECTIONS["permuted left-handed"])
    ct = mrml.add_ct(ct_image, name="CT")
    mrml.composite.SetBackgroundVolumeID(ct.GetID())
    output = _output(ct_image)
    applied = mrml.logic.apply_result(ct, output)

    assert sorted(applied.overlay_nodes) == ["gate2", "gate3", "gate4", ss.MAX_GATE]
    arrays = {g: sitk.GetArrayFromImage(im) for g, im in output.attention.items()}
    for gate, values in arrays.items():
        node = applied.overlay_nodes[gate]
        assert node.GetName() == f"CT attention {gate}"
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), values)
        np.testing.assert_allclose(_ijk_to_ras(node), _ijk_to_ras(ct), atol=1e-12)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(applied.overlay_nodes[ss.MAX_GATE]),
                                  np.maximum.reduce(list(arrays.values())))

    color_node = mrml.logic.attention_color_node()
    assert color_node.GetNumberOfColors() == 256
    rgba = [0.0] * 4
    color_node.GetColor(0, rgba)
    assert rgba[3] == 0.0                                   # lowest entry transparent
    color_node.GetColor(255, rgba)
    np.testing.assert_allclose(rgba, [*(INFERNO_TOP / 255.0), 1.0], atol=1e-6)
    color_node.GetColor(128, rgba)
    np.testing.assert_allclose(rgba[:3], INFERNO_MIDDLE / 255.0, atol=1e-6)
    for node in applied.overlay_nodes.values():
        display = node.GetDisplayNode()
        assert display.GetColorNodeID() == color_node.GetID()
        assert not display.GetAutoWindowLevel()
        assert display.GetWindowLevelMin() == pytest.approx(0.0) and display.GetWindowLevelMax() == pytest.approx(1.0)
        assert display.GetApplyThreshold()
        assert display.GetLowerThreshold() == pytest.approx(ss.OVERLAY_LOWER_THRESHOLD)

    # Shown after the run: max over gates as foreground over the CT.
    assert mrml.composite.GetBackgroundVolumeID() == ct.GetID()
    assert mrml.composite.GetForegroundVolumeID() == applied.overlay_nodes[ss.MAX_GATE].GetID()
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(ss.DEFAULT_OPACITY)
    # Switching gate and opacity: display only, nothing recomputed or added.
    before = mrml.node_ids()
    mrml.logic.show_overlay(ct, "gate3", 0.3)
    assert mrml.composite.GetForegroundVolumeID() == applied.overlay_nodes["gate3"].GetID()
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(0.3)
    assert mrml.logic.shown_gate(ct) == "gate3"
    mrml.logic.set_overlay_opacity(ct, 0.8)
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(0.8)
    mrml.logic.show_overlay(ct, ss.NO_OVERLAY)
    assert not mrml.composite.GetForegroundVolumeID()
    assert mrml.node_ids() == before
    with pytest.raises(KeyError):
        mrml.logic.show_overlay(ct, "gate9")


def test_color_table_file_reads_back_in_slicer_as_the_same_table(repo_root, mrml):
    path = repo_root / "Resources" / "ColorTables" / "AttentionInferno.txt"
    # Slicer's own reader and ours agree on every entry.
    node = mrml.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "from file")
    storage = slicer.vtkMRMLColorTableStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    table = ss.attention_color_table()
    assert node.GetNumberOfColors() == 256
    rgba = [0.0] * 4
    for index in (0, 13, 26, 200, 255):
        node.GetColor(index, rgba)
        np.testing.assert_allclose(rgba, table[index] / 255.0, atol=1e-6)


def test_slice_view_shows_ct_where_attention_is_low_and_inferno_where_high(mrml):
    ct_image = _phantom_ct(DIRECTIONS["RAS (diag -1 -1 1)"])
    ct = mrml.add_ct(ct_image)
    display = ct.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.AutoWindowLevelOff()
    display.SetWindowLevel(400, 40)
    mrml.composite.SetBackgroundVolumeID(ct.GetID())
    mrml.slice_node.SetDimensions(160, 144, 1)
    mrml.slice_logic.FitSliceToAll(160, 144)
    ct_only = ss.slice_view_rgba(mrml.slice_logic)
    assert ct_only.shape == (144, 160, 4)

    array = np.zeros(sitk.GetArrayViewFromImage(ct_image).shape, np.float32)
    array[:, :, 20:] = 1.0                     # attended on one half (i >= 20), zero on the other
    attention = sitk.GetImageFromArray(array)
    attention.CopyInformation(ct_image)
    output = ss.SegmentationOutput(_labels_like(ct_image), {"gate2": attention}, [PANCREAS.to_dict()])
    mrml.logic.apply_result(ct, output, opacity=1.0)
    blended = ss.slice_view_rgba(mrml.slice_logic)
    changed = np.any(blended[..., :3] != ct_only[..., :3], axis=-1)
    # Half the volume is untouched (transparent: exactly the CT), the other half is inferno's top.
    assert 0.25 < changed.mean() < 0.75
    unchanged_pixels = blended[~changed][:, :3]
    assert np.array_equal(unchanged_pixels, ct_only[~changed][:, :3])
    top = np.all(np.abs(blended[..., :3].astype(int) - INFERNO_TOP.astype(int)) <= 2, axis=-1)
    assert top.sum() > 0.2 * changed.sum()


# ----------------------------------------------------------------------------------------------
# Re-runs
# ----------------------------------------------------------------------------------------------

def test_rerun_reuses_every_node_and_keeps_user_settings(mrml):
    ct_image = _phantom_ct(DIRECTIONS["oblique"])
    ct = mrml.add_ct(ct_image)
    first = mrml.logic.apply_result(ct, _output(ct_image, seed=1))
    segmentation_node = first.segmentation_node
    segmentation_node.GetDisplayNode().SetSegmentOpacity2DFill("Pancreas", 0.25)
    segmentation_node.GetSegmentation().AddEmptySegment("MyNotes", "My notes")  # the user's own segment
    ids = mrml.node_ids()

    second_output = _output(ct_image, seed=2, center=(9, 16, 20), radii=(3, 5, 6))
    second = mrml.logic.apply_result(ct, second_output)
    assert mrml.node_ids() == ids
    assert second.segmentation_node is segmentation_node
    assert {g: n.GetID() for g, n in second.overlay_nodes.items()} == \
        {g: n.GetID() for g, n in first.overlay_nodes.items()}
    exported = _export_segment(mrml, segmentation_node, ct)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(exported),
                                  sitk.GetArrayViewFromImage(second_output.labelmap))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(second.overlay_nodes["gate4"]),
                                  sitk.GetArrayViewFromImage(second_output.attention["gate4"]))
    assert segmentation_node.GetDisplayNode().GetSegmentOpacity2DFill("Pancreas") == pytest.approx(0.25)
    assert segmentation_node.GetSegmentation().GetSegment("MyNotes") is not None
    # A segmentation chosen by the user receives the result instead.
    chosen = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "chosen")
    third = mrml.logic.apply_result(ct, second_output, segmentation_node=chosen)
    assert third.segmentation_node is chosen
    assert ct.GetNodeReference(ss.SEGMENTATION_ROLE) is chosen


# ----------------------------------------------------------------------------------------------
# .seg.nrrd from the scene
# ----------------------------------------------------------------------------------------------

def test_seg_nrrd_saved_from_the_scene_reads_back_with_slicerio(mrml, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    ct_image = _phantom_ct(DIRECTIONS["oblique"])
    ct = mrml.add_ct(ct_image)
    output = _output(ct_image)
    applied = mrml.logic.apply_result(ct, output)
    path = tmp_path / "pancreas.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(applied.segmentation_node)

    segmentation = slicerio.read_segmentation(str(path))
    (segment,) = segmentation["segments"]
    assert segment["name"] == "Pancreas"
    np.testing.assert_allclose(segment["color"], PANCREAS_RGB, atol=1e-5)
    assert segment["terminology"]["type"] == ["SCT", "15776009", "Pancreas"]
    assert segment["terminology"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
    labels = slicerio.extract_segments(segmentation, [("Pancreas", 1)])
    assert int(np.count_nonzero(labels["voxels"])) == int(sitk.GetArrayViewFromImage(output.labelmap).sum())


# ----------------------------------------------------------------------------------------------
# Background job: the real `segment` command with a tiny model
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_ct(real_ct_path) -> sitk.Image:
    """The pancreas region of the real CT (64 x 48 x 16 voxels, 3 mm): fast with the tiny model."""
    ct = sitk.ReadImage(str(real_ct_path))
    return sitk.RegionOfInterest(ct, [64, 48, 16], [20, 30, 2])  # size, then start index (x, y, z)


@pytest.fixture(scope="module")
def finished_job(small_ct, tiny_model_path, tmp_path_factory):
    """One successful background job; the result files are read before the work folder goes."""
    work_root = tmp_path_factory.mktemp("jobs")
    job = ss.SegmentationJob(small_ct, model_path=tiny_model_path, device="cpu", overlap=0.0,
                             python_executable=sys.executable, work_root=str(work_root))
    job.start()
    status = job.wait(timeout=120)
    files = {}
    if status.state == ss.SUCCEEDED:
        files["labels"] = sitk.GetArrayFromImage(sitk.ReadImage(str(job.work_dir / ss.LABELS_FILE)))
        for path in sorted((job.work_dir / ss.ATTENTION_DIR).iterdir()):
            files[path.name] = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    job.cleanup()
    return job, status, files, work_root


def test_job_runs_the_segment_command_and_the_result_fills_the_scene(mrml, finished_job, small_ct):
    job, status, files, work_root = finished_job
    assert status.state == ss.SUCCEEDED, f"{status.error}\n" + "\n".join(job.log_lines)
    assert status.fraction == 1.0
    assert not job.work_dir.exists() and list(work_root.iterdir()) == []   # no temporary files left
    assert sorted(files) == ["attention_gate2.nrrd", "attention_gate3.nrrd", "attention_gate4.nrrd", "labels"]
    output = job.result()
    assert output.summary["device"] == "cpu" and output.summary["gates"] == ["gate2", "gate3", "gate4"]
    assert output.labels[0]["name"] == "Pancreas"

    ct = mrml.add_ct(small_ct)
    applied = mrml.logic.apply_result(ct, output)
    exported = _export_segment(mrml, applied.segmentation_node, ct)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(exported), files["labels"])
    for gate in ("gate2", "gate3", "gate4"):
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(applied.overlay_nodes[gate]),
                                      files[f"attention_{gate}.nrrd"])
    assert applied.volume_ml["Pancreas"] == pytest.approx(output.summary["volume_ml"]["Pancreas"], rel=1e-6)


def test_in_process_run_gives_the_same_result_as_the_job(finished_job, small_ct, tiny_model_path):
    job, status, files, _ = finished_job
    assert status.state == ss.SUCCEEDED
    messages = []
    output = ss.run_segmentation_in_process(small_ct, tiny_model_path, device="cpu", overlap=0.0,
                                            progress=lambda fraction, message: messages.append(fraction))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(output.labelmap), files["labels"])
    for gate in ("gate2", "gate3", "gate4"):
        np.testing.assert_allclose(sitk.GetArrayViewFromImage(output.attention[gate]),
                                   files[f"attention_{gate}.nrrd"], atol=1e-6)
    assert output.labels == job.result().labels and messages[-1] == 1.0


def test_job_command_line_contract(small_ct, tmp_path):
    job = ss.SegmentationJob(small_ct, model_path="/models/m.pt", device="cuda", overlap=0.25,
                             point_ras=(-12.5, 30.0, -7.25), python_executable="/py")
    job.work_dir = tmp_path
    command = job.command()
    assert command[:4] == ["/py", "-m", "AttentionUNetSegmentLib", "segment"]
    assert command[4] == str(tmp_path / ss.INPUT_FILE)
    assert command[command.index("-o") + 1] == str(tmp_path / ss.LABELS_FILE)
    assert command[command.index("--attention-format") + 1] == "nrrd"
    assert command[command.index("--progress") + 1] == "json"
    assert command[command.index("--device") + 1] == "cuda"
    assert command[command.index("--model") + 1] == "/models/m.pt"
    assert "--overlap=0.25" in command
    assert "--point=-12.5,30,-7.25" in command    # "=": a negative coordinate is not an option
    default_model = ss.SegmentationJob(small_ct, python_executable="/py")
    assert "--model" not in default_model.command()
    env = job._environment()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == ss.lib_parent_dir()


def test_failure_messages_are_one_clear_line():
    assert "PyTorch is not installed" in ss.describe_failure(
        1, ["Traceback (most recent call last):", '  File "x", line 1', "ModuleNotFoundError: No module named 'torch'"])
    assert "GPU ran out of memory" in ss.describe_failure(
        1, ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"])
    assert ss.describe_failure(2, ['{"fraction": 0.1, "message": "x"}', "error: /a/ct.nii: is not 3D"]) == \
        "/a/ct.nii: is not 3D"
    assert "signal 9" in ss.describe_failure(-9, [])
    for message in (ss.describe_failure(1, ["Traceback (most recent call last):", "ValueError: bad"]),
                    ss.describe_failure(3, [])):
        assert message and "\n" not in message


# ----------------------------------------------------------------------------------------------
# Environment helpers
# ----------------------------------------------------------------------------------------------

def test_device_probe_reports_torch_without_importing_it_here():
    probe = ss.DeviceProbe(sys.executable).start()
    deadline = time.perf_counter() + 60
    while probe.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.05)
    info = probe.poll()
    assert info["torch"] and isinstance(info["cuda"], list) and isinstance(info["mps"], bool)


def test_scene_logic_import_does_not_load_torch_or_qt():
    code = ("import sys, AttentionUNetSegmentLib.slicer.scene; "
            "print('torch' in sys.modules, 'qt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": ss.lib_parent_dir()})
    assert out.stdout.split() == ["False", "False"]


def test_pip_constraints_pin_packages_slicer_ships():
    from importlib import metadata

    text = ss.pip_constraints_for_shipped_packages()
    assert f"numpy=={metadata.version('numpy')}" in text.splitlines()
    assert f"SimpleITK=={metadata.version('SimpleITK')}" in text.splitlines()


# ----------------------------------------------------------------------------------------------
# The module file outside Slicer. Slicer's Qt side is replaced by small fakes: `qt` (a mock),
# slicer.i18n, slicer.ScriptedLoadableModule, a parameter-node wrapper that notifies observers
# like the real one, widgets with the few Qt properties the module uses, and slicer.app. The
# MRML scene, interaction/selection nodes, markups, jobs and processes are real. This runs the
# module's self-test and drives the widget's flows (Segment, Cancel, errors, gate/opacity,
# click-to-segment); it cannot show that the real Qt widgets behave like the fakes.
# ----------------------------------------------------------------------------------------------

class FakeWidget:
    """The Qt properties and signals the module uses, on plain attributes."""

    def __init__(self, name: str):
        self.objectName, self.enabled, self.visible, self.checked = name, True, True, False
        self.text, self.toolTip, self.value, self.currentPath = "", "", 0.0, ""
        self._slots: dict[str, list] = {}
        self._blocked = False

    def connect(self, signal, slot):
        self._slots.setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        if not self._blocked:
            for slot in self._slots.get(signal, []):
                slot(*args)

    def blockSignals(self, blocked):
        previous, self._blocked = self._blocked, blocked
        return previous

    def setVisible(self, visible):
        self.visible = visible

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setStyleSheet(self, sheet):
        self.styleSheet = sheet

    def setSegmentationNode(self, node):
        self.segmentationNode = node

    def setMRMLScene(self, scene):
        self.scene = scene


class FakeComboBox(FakeWidget):
    def __init__(self, name: str):
        super().__init__(name)
        self.items: list[tuple[str, object]] = []
        self.currentIndex = -1

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self.currentIndex < 0:
            self.setCurrentIndex(0)

    def clear(self):
        self.items, self.currentIndex = [], -1

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    def setCurrentIndex(self, index):
        if index != self.currentIndex:
            self.currentIndex = index
            self.emit("currentIndexChanged(int)", index)

    @property
    def currentData(self):
        return self.items[self.currentIndex][1] if 0 <= self.currentIndex < len(self.items) else None

    def itemTexts(self):
        return [text for text, _ in self.items]


def fake_parameter_node_wrapper(cls):
    """Like slicer.parameterNodeWrapper: typed attributes with defaults; each change notifies."""
    fields = {name: getattr(cls, name, None) for name in cls.__annotations__}

    class Wrapper:
        def __init__(self, node):
            object.__setattr__(self, "_values", dict(fields))
            object.__setattr__(self, "_observers", {})
            object.__setattr__(self, "parameterNode", node)

        def __getattr__(self, name):
            values = object.__getattribute__(self, "_values")
            if name in values:
                return values[name]
            raise AttributeError(name)

        def __setattr__(self, name, value):
            if name not in self._values:
                raise AttributeError(f"{name} is not a parameter")
            self._values[name] = value
            for callback in list(self._observers.values()):
                callback(self, "ModifiedEvent")

        def AddObserver(self, event, callback, priority=0.0):
            tag = len(self._observers) + 1
            self._observers[tag] = callback
            return tag

        def RemoveObserver(self, tag):
            self._observers.pop(tag, None)

        def connectGui(self, ui):
            return object()

        def disconnectGui(self, tag):
            assert tag is not None

    Wrapper.__name__ = cls.__name__
    return Wrapper


@pytest.fixture
def module_file(mrml, monkeypatch, tmp_path):
    import contextlib
    import types
    import unittest
    import xml.etree.ElementTree as ET
    from unittest import mock

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

        def setup(self):
            self.layout = mock.MagicMock(name="layout")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self._parameterNode = None

        def getParameterNode(self):
            if self._parameterNode is None:
                self._parameterNode = mrml.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
            return self._parameterNode

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            pass

    stubs = {
        "qt": mock.MagicMock(name="qt"),
        "slicer.i18n": types.SimpleNamespace(tr=lambda text: text, translate=lambda context, text: text),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            parameterNodeWrapper=fake_parameter_node_wrapper, WithinRange=lambda low, high: None),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=ScriptedLoadableModule, ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleTest=ScriptedLoadableModuleTest),
    }
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)

    interaction = mrml.scene.AddNewNodeByClass("vtkMRMLInteractionNode")
    selection = mrml.scene.AddNewNodeByClass("vtkMRMLSelectionNode")
    red = types.SimpleNamespace(mrmlSliceCompositeNode=lambda: mrml.composite)
    app = types.SimpleNamespace(
        processEvents=lambda: None, temporaryPath=str(tmp_path),
        layoutManager=lambda: types.SimpleNamespace(sliceWidget=lambda name: red, sliceViewNames=lambda: ["Red"]),
        applicationLogic=lambda: types.SimpleNamespace(GetInteractionNode=lambda: interaction,
                                                       GetSelectionNode=lambda: selection))
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: mrml.segmentations_logic)), raising=False)

    def load_ui(path):
        assert Path(path).is_file(), path
        return FakeWidget("AttentionUNetSegment")

    def child_widget_variables(widget):
        names = {w.get("name"): w.get("class") for w in ET.parse(UI_FILE).getroot().iter("widget")}
        return types.SimpleNamespace(**{name: FakeComboBox(name) if cls == "QComboBox" else FakeWidget(name)
                                        for name, cls in names.items()})

    dialogs = types.SimpleNamespace(errors=[], confirmations=[], answer=True)

    def confirm(text, **kwargs):
        dialogs.confirmations.append(text)
        return dialogs.answer

    monkeypatch.setattr(slicer.util, "loadUI", load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", child_widget_variables)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", confirm)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: dialogs.errors.append((text, kwargs)))
    monkeypatch.setattr(slicer.util, "WaitCursor", contextlib.nullcontext)
    # The job's process runs this Python (Slicer would use PythonSlicer).
    monkeypatch.setattr(ss, "default_python_executable", lambda: sys.executable)
    spec = importlib.util.spec_from_file_location("AttentionUNetSegment", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.dialogs = dialogs
    module.interaction, module.selection = interaction, selection
    return module


MODULE_FILE = Path(ss.__file__).resolve().parents[2] / "AttentionUNetSegment.py"
UI_FILE = Path(ss.__file__).resolve().parents[3] / "Resources" / "UI" / "AttentionUNetSegment.ui"


def test_module_self_test_runs_end_to_end(module_file, mrml):
    """The self-test Slicer runs (phantom segmented in a background process, overlays, re-use;
    cancel within 2 s leaving scene and disk clean; a broken model file gives one line)."""
    assert Path(module_file.resourcesDirectory()) == UI_FILE.parents[1]
    case = module_file.AttentionUNetSegmentTest("runTest")
    result = unittest.TestResult()
    case.run(result)
    assert result.wasSuccessful(), "\n".join(text for _, text in result.failures + result.errors)


def _drive(widget, timeout=120):
    """What the module's QTimer does: call onJobTimer until the job is over."""
    deadline = time.perf_counter() + timeout
    while widget._job is not None:
        widget.onJobTimer()
        time.sleep(0.05)
        assert time.perf_counter() < deadline, "the job did not finish"


def test_widget_flows_segment_cancel_errors_overlays_click(module_file, mrml, small_ct, tiny_model_path, tmp_path,
                                                           monkeypatch, empty_model_path):
    monkeypatch.setattr(ss, "DeviceProbe", lambda *a: types.SimpleNamespace(
        start=lambda: types.SimpleNamespace(poll=lambda: {"torch": "2.x", "cuda": ["NVIDIA Test GPU"], "mps": False})))
    ct = mrml.add_ct(small_ct)
    mrml.composite.SetBackgroundVolumeID(ct.GetID())
    widget = module_file.AttentionUNetSegmentWidget(parent=types.SimpleNamespace(isEntered=True))
    widget.setup()
    ui, p = widget.ui, widget._parameterNode
    assert p.inputVolume is ct                                    # the volume shown in the slice views
    widget.onProbeTimer()
    assert ui.deviceComboBox.itemTexts() == ["Auto: GPU (NVIDIA Test GPU)", "CPU", "GPU: NVIDIA Test GPU"]
    assert ui.segmentButton.text == "Segment" and ui.segmentButton.enabled

    # Settings through the widgets: own model file, CPU, fastest quality.
    ui.modelComboBox.setCurrentIndex(ui.modelComboBox.findData(widget.CUSTOM_MODEL))
    assert ui.modelPathLineEdit.visible
    ui.modelPathLineEdit.currentPath = str(tiny_model_path)
    ui.modelPathLineEdit.emit("currentPathChanged(QString)", str(tiny_model_path))
    assert (p.model, p.modelPath) == (widget.CUSTOM_MODEL, str(tiny_model_path))
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cpu"))
    assert p.device == "cpu"
    p.overlap = 0.0

    # Segment -> Cancel while running -> result in the scene.
    widget.onSegmentButton()
    assert ui.segmentButton.text == "Cancel" and ui.progressBar.visible and not ui.inputVolumeSelector.enabled
    _drive(widget)
    assert not module_file.dialogs.errors, module_file.dialogs.errors
    assert ui.segmentButton.text == "Segment" and not ui.progressBar.visible
    assert "Pancreas:" in ui.resultLabel.text and "mL" in ui.resultLabel.text and "cpu" in ui.resultLabel.text
    segmentation = p.outputSegmentation
    assert segmentation is not None and segmentation.GetSegmentation().GetSegment("Pancreas") is not None
    overlays = widget.logic.overlay_nodes_for(ct)
    assert ui.gateComboBox.itemTexts() == ["Maximum over gates", "Gate 2", "Gate 3", "Gate 4", "None (hide overlay)"]
    assert mrml.composite.GetForegroundVolumeID() == overlays[ss.MAX_GATE].GetID()

    # Gate and opacity: instant, display only.
    ids = mrml.node_ids()
    ui.gateComboBox.setCurrentIndex(ui.gateComboBox.findData("gate3"))
    assert p.gate == "gate3" and mrml.composite.GetForegroundVolumeID() == overlays["gate3"].GetID()
    widget.onOpacityChanged(0.3)
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(0.3)
    ui.gateComboBox.setCurrentIndex(ui.gateComboBox.findData(ss.NO_OVERLAY))
    assert not mrml.composite.GetForegroundVolumeID()
    assert mrml.node_ids() == ids

    # Cancel right after pressing Segment: the scene is as it was, no files are left.
    widget.onSegmentButton()
    job = widget._job
    widget.onSegmentButton()
    assert widget._job is None and job.poll().state == ss.CANCELLED and not job.work_dir.exists()
    assert ui.statusLabel.text.startswith("Cancelled") and ui.segmentButton.text == "Segment"
    assert mrml.node_ids() == ids

    # Errors are one line in the module (and a dialog with the log as details), never a traceback.
    # (The broken-model text from the real command is checked by the self-test above.)
    monkeypatch.setattr(ss, "default_python_executable", lambda: shutil.which("false"))
    widget.onSegmentButton()
    _drive(widget)
    message, options = module_file.dialogs.errors[-1]
    assert message == "the segmentation process failed (exit code 1)" and ui.statusLabel.text == message
    monkeypatch.setattr(ss, "default_python_executable", lambda: sys.executable)
    p.modelPath = str(tmp_path / "missing.pt")
    widget.onSegmentButton()
    assert "missing.pt: does not exist" in ui.statusLabel.text and widget._job is None
    p.modelPath = str(tiny_model_path)
    p.inputVolume = None
    assert not ui.segmentButton.enabled and not ui.clickToSegmentButton.enabled
    widget.startSegmentation()
    assert "no input volume selected" in ui.statusLabel.text
    p.inputVolume = ct
    assert mrml.node_ids() == ids

    # Click-to-segment: place mode on the point node, a click starts a run around the point.
    widget.onClickToSegmentToggled(True)
    point_node = p.pointNode
    assert module_file.interaction.GetCurrentInteractionMode() == module_file.interaction.Place
    assert module_file.selection.GetActivePlaceNodeID() == point_node.GetID()
    centre = [0.0, 0.0, 0.0]
    bounds = [0.0] * 6
    ct.GetRASBounds(bounds)
    centre = [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2]
    point_node.AddControlPoint(vtk.vtkVector3d(*centre))       # what clicking in a slice view does
    assert widget._job is not None and any(a.startswith("--point=") for a in widget._job.command())
    _drive(widget)
    assert not ui.clickToSegmentButton.checked
    assert "Pancreas:" in ui.resultLabel.text
    assert p.outputSegmentation is segmentation               # the same nodes again

    # A model that finds nothing: the result is shown, and the empty segment is said in words.
    p.modelPath = str(empty_model_path)
    widget.onSegmentButton()
    _drive(widget)
    assert "Pancreas: 0.0 mL" in ui.resultLabel.text
    assert "Nothing was found for Pancreas: the segment is empty" in ui.resultLabel.text
    widget.cleanup()
