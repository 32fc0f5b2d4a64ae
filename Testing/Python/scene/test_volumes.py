"""Volume node <-> SimpleITK image on a real MRML scene: exact geometry (LPS, RAS, permuted,
oblique), the input checks, and which volumes count as CTs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from AttentionUNetSegmentLib.core.errors import InputError  # noqa: E402
from AttentionUNetSegmentLib.scene import volumes  # noqa: E402
from mrml_helpers import DIRECTIONS, grid, ijk_to_ras, output_like, phantom_ct  # noqa: E402


def test_real_ct_loaded_by_slicer_converts_exactly(mrml, real_ct_path):
    node = mrml.volumes_logic.AddArchetypeVolume(str(real_ct_path), "ct")
    assert node is not None
    image = volumes.volume_node_to_image(node)
    reference = sitk.ReadImage(str(real_ct_path))
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference))
    assert volumes.image_matches_volume_grid(reference, node)
    shifted = sitk.Image(reference)
    shifted.SetOrigin([v + 0.5 for v in reference.GetOrigin()])
    assert not volumes.image_matches_volume_grid(shifted, node)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_geometry_round_trip_and_voxel_positions(mrml, name):
    image = phantom_ct(DIRECTIONS[name])
    node = mrml.add_ct(image, study=False)
    matrix = ijk_to_ras(node)
    # Independent of our conversion: each voxel centre in RAS is SimpleITK's LPS point flipped.
    for index in [(0, 0, 0), (39, 0, 0), (0, 35, 0), (0, 0, 17), (7, 20, 11)]:
        ras = matrix @ np.array([*index, 1.0])
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    back = volumes.volume_node_to_image(node)
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def test_input_checks_give_one_line_messages(mrml):
    with pytest.raises(InputError, match="no input volume"):
        volumes.check_input_volume(None)
    cases = [("vtkMRMLLabelMapVolumeNode", "labels", np.zeros((4, 4, 4), np.uint8), "labels: is not a CT volume"),
             ("vtkMRMLScalarVolumeNode", "empty", None, "empty: has no voxels"),
             ("vtkMRMLScalarVolumeNode", "flat", np.zeros((1, 8, 8), np.int16), "flat: is a single slice"),
             ("vtkMRMLVectorVolumeNode", "photo", np.zeros((4, 8, 8, 3), np.uint8), "photo: .*3 components")]
    for node_class, name, voxels, message in cases:
        node = mrml.scene.AddNewNodeByClass(node_class, name)
        if voxels is not None:
            slicer.util.updateVolumeFromArray(node, voxels)
        with pytest.raises(InputError, match=message):
            volumes.check_input_volume(node)
    mr = grid(np.eye(3), pixel=sitk.sitkFloat32) + 300.0
    warnings = volumes.ct_warnings(mr, "MR")
    assert warnings and all(w.startswith("MR: ") and "\n" not in w for w in warnings)
    assert volumes.ct_warnings(phantom_ct(np.eye(3)), "CT") == []


def test_attention_overlays_are_not_offered_or_accepted_as_ct(mrml):
    ct_image = phantom_ct(DIRECTIONS["oblique"])
    ct = mrml.add_ct(ct_image, name="Abdomen CT")
    labelmap = mrml.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    applied = mrml.logic.apply_result(ct, output_like(ct_image))
    overlay = applied.overlay_nodes["gate3"]
    with pytest.raises(InputError, match="Abdomen CT attention gate3: is an attention overlay"):
        volumes.check_input_volume(overlay)
    assert volumes.is_ct_candidate(ct)
    assert not volumes.is_ct_candidate(overlay) and not volumes.is_ct_candidate(labelmap)
    # What the module's input selector hides: exactly the overlays (4: three gates and their maximum).
    assert sorted(mrml.logic.overlay_node_ids()) == sorted(n.GetID() for n in applied.overlay_nodes.values())
    # The volume the module proposes: the CT shown in a slice view, never an overlay shown there.
    mrml.composite.SetBackgroundVolumeID(overlay.GetID())
    assert volumes.volume_shown_in_slice_views(mrml.scene) is ct
    other = mrml.add_ct(ct_image, name="Other CT", study=False)
    mrml.composite.SetBackgroundVolumeID(other.GetID())
    assert volumes.volume_shown_in_slice_views(mrml.scene) is other


def test_clicks_map_from_world_to_ct_space_under_a_transform(mrml):
    ct = mrml.add_ct(phantom_ct(DIRECTIONS["RAS (diag -1 -1 1)"]))
    assert volumes.world_to_volume_ras(ct, (1.0, 2.0, 3.0)) == pytest.approx((1.0, 2.0, 3.0))
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)
    matrix.SetElement(2, 3, -5.0)
    transform.SetMatrixTransformToParent(matrix)
    ct.SetAndObserveTransformNodeID(transform.GetID())
    assert volumes.world_to_volume_ras(ct, (1.0, 2.0, 3.0)) == pytest.approx((-9.0, 2.0, 8.0))
