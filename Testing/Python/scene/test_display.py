"""How results are shown, on a real MRML scene and Slicer's own slice pipeline: the overlay colour
table and display, gate/opacity switching without re-runs, and what a slice view shows, including
an overlay on a coarse grid of its own landing in the right physical place."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from AttentionUNetSegmentLib.core.labels import PANCREAS  # noqa: E402
from AttentionUNetSegmentLib.scene import display  # noqa: E402
from AttentionUNetSegmentLib.scene.results import SegmentationOutput  # noqa: E402
from AttentionUNetSegmentLib.scene.roles import (  # noqa: E402
    DEFAULT_OPACITY,
    MAX_GATE,
    NO_OVERLAY,
    OVERLAY_LOWER_THRESHOLD,
)

from mrml_helpers import (  # noqa: E402
    DIRECTIONS,
    INFERNO_MIDDLE,
    INFERNO_TOP,
    ijk_to_ras,
    labels_like,
    output_like,
    phantom_ct,
)


def test_overlays_values_colour_table_and_display(mrml):
    ct_image = phantom_ct(DIRECTIONS["permuted left-handed"])
    ct = mrml.add_ct(ct_image, name="CT")
    mrml.composite.SetBackgroundVolumeID(ct.GetID())
    output = output_like(ct_image)
    applied = mrml.logic.apply_result(ct, output)

    assert sorted(applied.overlay_nodes) == ["gate2", "gate3", "gate4", MAX_GATE]
    arrays = {g: sitk.GetArrayFromImage(im) for g, im in output.attention.items()}
    for gate, values in arrays.items():
        node = applied.overlay_nodes[gate]
        assert node.GetName() == f"CT attention {gate}"
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), values)
        np.testing.assert_allclose(ijk_to_ras(node), ijk_to_ras(ct), atol=1e-9)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(applied.overlay_nodes[MAX_GATE]),
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
        node_display = node.GetDisplayNode()
        assert node_display.GetColorNodeID() == color_node.GetID()
        assert not node_display.GetAutoWindowLevel()
        assert node_display.GetWindowLevelMin() == pytest.approx(0.0)
        assert node_display.GetWindowLevelMax() == pytest.approx(1.0)
        assert node_display.GetApplyThreshold()
        assert node_display.GetLowerThreshold() == pytest.approx(OVERLAY_LOWER_THRESHOLD)

    # Shown after the run: max over gates as foreground over the CT.
    assert mrml.composite.GetBackgroundVolumeID() == ct.GetID()
    assert mrml.composite.GetForegroundVolumeID() == applied.overlay_nodes[MAX_GATE].GetID()
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(DEFAULT_OPACITY)
    # Switching gate and opacity: display only, nothing recomputed or added.
    before = mrml.node_ids()
    mrml.logic.show_overlay(ct, "gate3", 0.3)
    assert mrml.composite.GetForegroundVolumeID() == applied.overlay_nodes["gate3"].GetID()
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(0.3)
    assert mrml.logic.shown_gate(ct) == "gate3"
    mrml.logic.set_overlay_opacity(ct, 0.8)
    assert mrml.composite.GetForegroundOpacity() == pytest.approx(0.8)
    mrml.logic.show_overlay(ct, NO_OVERLAY)
    assert not mrml.composite.GetForegroundVolumeID() and mrml.logic.shown_gate(ct) == NO_OVERLAY
    assert mrml.node_ids() == before
    with pytest.raises(KeyError):
        mrml.logic.show_overlay(ct, "gate9")


def test_color_table_file_reads_back_in_slicer_as_the_same_table(repo_root, mrml):
    path = repo_root / "Resources" / "ColorTables" / "AttentionInferno.txt"
    node = mrml.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "from file")
    storage = slicer.vtkMRMLColorTableStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    table = display.attention_color_table()
    assert node.GetNumberOfColors() == 256
    rgba = [0.0] * 4
    for index in (0, 13, 26, 200, 255):
        node.GetColor(index, rgba)
        np.testing.assert_allclose(rgba, table[index] / 255.0, atol=1e-6)


def _grey_ct_in_view(mrml, ct_image, size=(160, 144)):
    ct = mrml.add_ct(ct_image)
    ct_display = ct.GetDisplayNode()
    ct_display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    ct_display.AutoWindowLevelOff()
    ct_display.SetWindowLevel(400, 40)
    mrml.composite.SetBackgroundVolumeID(ct.GetID())
    mrml.slice_node.SetDimensions(size[0], size[1], 1)
    mrml.slice_logic.FitSliceToAll(size[0], size[1])
    return ct, display.slice_view_rgba(mrml.slice_logic)


def test_slice_view_shows_ct_where_attention_is_low_and_inferno_where_high(mrml):
    ct_image = phantom_ct(DIRECTIONS["RAS (diag -1 -1 1)"])
    ct, ct_only = _grey_ct_in_view(mrml, ct_image)
    assert ct_only.shape == (144, 160, 4)
    array = np.zeros(sitk.GetArrayViewFromImage(ct_image).shape, np.float32)
    array[:, :, 20:] = 1.0                     # attended on one half (i >= 20), zero on the other
    attention = sitk.GetImageFromArray(array)
    attention.CopyInformation(ct_image)
    output = SegmentationOutput(labels_like(ct_image), {"gate2": attention}, [PANCREAS.to_dict()])
    mrml.logic.apply_result(ct, output, opacity=1.0)
    blended = display.slice_view_rgba(mrml.slice_logic)
    changed = np.any(blended[..., :3] != ct_only[..., :3], axis=-1)
    # Half the volume is untouched (transparent: exactly the CT), the other half is inferno's top.
    assert 0.25 < changed.mean() < 0.75
    assert np.array_equal(blended[~changed][:, :3], ct_only[~changed][:, :3])
    top = np.all(np.abs(blended[..., :3].astype(int) - INFERNO_TOP.astype(int)) <= 2, axis=-1)
    assert top.sum() > 0.2 * changed.sum()


def _pixel_positions_lps(slice_node, height: int, width: int) -> np.ndarray:
    """(H, W, 3) LPS position of each pixel of slice_view_rgba's picture (row 0 at the top)."""
    xy_to_ras = slicer.util.arrayFromVTKMatrix(slice_node.GetXYToRAS())
    y, x = np.mgrid[0:height, 0:width]
    xy = np.stack([x, height - 1 - y, np.zeros_like(x), np.ones_like(x)], axis=-1).astype(float)
    ras = xy @ xy_to_ras.T
    return ras[..., :3] * [-1, -1, 1]


def test_overlay_on_a_coarse_grid_lands_in_the_right_physical_place(mrml):
    """An attention map written on its own grid, 4x coarser than the CT and oblique like it,
    attended where the LPS x coordinate is above a plane: the slice view must colour exactly the
    pixels on that side (up to one coarse voxel of interpolation), wherever the grids' voxels are."""
    ct_image = phantom_ct(DIRECTIONS["oblique"])
    ct, ct_only = _grey_ct_in_view(mrml, ct_image)
    coarse_grid = sitk.Image([10, 9, 5], sitk.sitkFloat32)
    coarse_grid.SetDirection(ct_image.GetDirection())
    coarse_grid.SetSpacing([s * 4 for s in ct_image.GetSpacing()])
    coarse_grid.SetOrigin(ct_image.TransformContinuousIndexToPhysicalPoint([1.5, 1.5, 1.5]))
    centres = np.array([[[coarse_grid.TransformIndexToPhysicalPoint((i, j, k)) for i in range(10)]
                         for j in range(9)] for k in range(5)])          # (z, y, x, 3) LPS
    plane_x = float(np.median(centres[..., 0]))
    coarse = sitk.GetImageFromArray((centres[..., 0] > plane_x).astype(np.float32))
    coarse.CopyInformation(coarse_grid)
    output = SegmentationOutput(labels_like(ct_image), {"gate4": coarse}, [PANCREAS.to_dict()])
    mrml.logic.apply_result(ct, output, gate="gate4", opacity=1.0)
    blended = display.slice_view_rgba(mrml.slice_logic)
    changed = np.any(blended[..., :3] != ct_only[..., :3], axis=-1)

    lps = _pixel_positions_lps(mrml.slice_node, *changed.shape)
    index = np.array([[coarse.TransformPhysicalPointToContinuousIndex(p) for p in row] for row in lps])
    margin = 1.0                                  # one coarse voxel: linear interpolation reaches that far
    inside = np.all((index >= margin) & (index <= np.array(coarse.GetSize()) - 1 - margin), axis=-1)
    reach = max(coarse.GetSpacing())
    attended = inside & (lps[..., 0] > plane_x + reach)
    ignored = inside & (lps[..., 0] < plane_x - reach)
    assert attended.sum() > 200 and ignored.sum() > 200, "the slice does not cross both sides of the plane"
    assert changed[attended].mean() > 0.99
    assert changed[ignored].mean() < 0.01
