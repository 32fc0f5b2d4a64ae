"""Volume node <-> SimpleITK image, exactly, and the checks a CT volume node must pass.

Slicer keeps a volume's grid as IJK-to-RAS (origin + spacing + direction columns); SimpleITK
keeps the same grid in LPS. Voxel (i, j, k) of a node is pixel (x, y, z) of the image and
element [k, j, i] of `sitk.GetArrayFromImage`: arrays here are (z, y, x) = (k, j, i).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from ..core.errors import InputError
from .roles import is_attention_overlay

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_geometry_lps(volume_node) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(origin, spacing, direction) of a volume node in SimpleITK's LPS convention.

    Spacing is taken as stored (no re-normalisation); direction is row-major 3x3.
    """
    directions = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASDirectionMatrix(directions)
    direction_lps = _RAS_TO_LPS @ _matrix_to_array(directions)[:3, :3]
    origin_lps = _RAS_TO_LPS @ np.asarray(volume_node.GetOrigin(), dtype=float)
    return (tuple(float(v) for v in origin_lps), tuple(float(v) for v in volume_node.GetSpacing()),
            tuple(float(v) for v in direction_lps.ravel()))


def image_ijk_to_ras(image: sitk.Image) -> vtk.vtkMatrix4x4:
    """IJK-to-RAS of a SimpleITK image's grid (LPS -> RAS): what a volume node showing it needs."""
    direction_ras = _RAS_TO_LPS @ np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin_ras = _RAS_TO_LPS @ np.asarray(image.GetOrigin(), dtype=float)
    columns = direction_ras * np.asarray(image.GetSpacing(), dtype=float)  # column c scaled by spacing c
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, float(columns[r, c]))
        matrix.SetElement(r, 3, float(origin_ras[r]))
    return matrix


def array_view(volume_node) -> np.ndarray:
    """(k, j, i) view of a single-component volume node's voxels (no copy)."""
    image_data = volume_node.GetImageData()
    scalars = image_data.GetPointData().GetScalars() if image_data is not None else None
    if scalars is None:
        raise InputError(volume_node.GetName(), "has no voxels (empty volume)")
    dims = image_data.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])


def check_input_volume(volume_node) -> None:
    """Structural checks a CT volume node must pass; raises InputError naming the node."""
    if volume_node is None:
        raise InputError(None, "no input volume selected: load a CT and choose it as input volume")
    name = volume_node.GetName()
    if not volume_node.IsA("vtkMRMLScalarVolumeNode") or volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(name, "is not a CT volume (a labelmap or another kind of node); choose the CT")
    if is_attention_overlay(volume_node):
        raise InputError(name, "is an attention overlay made by this module, not a CT; choose the CT")
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(name, "has no voxels (empty volume)")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(name, f"has {image_data.GetNumberOfScalarComponents()} components per voxel "
                               "(colour or vector image); a CT has one")
    dims = image_data.GetDimensions()
    if min(dims) < 2:
        raise InputError(name, f"is a single slice ({dims[0]}x{dims[1]}x{dims[2]}); a 3D CT volume is needed")


def is_ct_candidate(node) -> bool:
    """What the input selector may offer: scalar volumes that are neither labelmaps nor our overlays."""
    return (node is not None and node.IsA("vtkMRMLScalarVolumeNode")
            and not node.IsA("vtkMRMLLabelMapVolumeNode") and not is_attention_overlay(node))


def volume_node_to_image(volume_node) -> sitk.Image:
    """A copy of the volume's voxels as a SimpleITK image with the exact same grid (LPS).

    A parent transform is not applied: results are computed on the volume's own grid and are
    placed under the same transform.
    """
    check_input_volume(volume_node)
    return image_on_grid_of(np.ascontiguousarray(array_view(volume_node)), volume_node)  # copies


def image_on_grid_of(array_zyx: np.ndarray, volume_node) -> sitk.Image:
    """`array_zyx` as a SimpleITK image on the volume's exact grid (LPS geometry; no transform)."""
    image = sitk.GetImageFromArray(array_zyx)
    origin, spacing, direction = volume_geometry_lps(volume_node)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def image_to_volume_node(image: sitk.Image, volume_node) -> None:
    """Give `volume_node` the voxels (a copy) and exact grid of a 3D SimpleITK image (LPS -> RAS)."""
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype == np.int64 or array.dtype == np.uint64:
        array = array.astype(np.int32)
    buffer = voxel_buffer(volume_node, array.shape, array.dtype, image_ijk_to_ras(image))
    buffer[...] = array
    voxels_modified(volume_node)


def image_matches_volume_grid(image: sitk.Image, volume_node, tolerance_mm: float = 1e-3) -> bool:
    """True when `image` lies on the volume node's voxel grid (size, spacing, origin, direction)."""
    dims = volume_node.GetImageData().GetDimensions() if volume_node.GetImageData() else None
    if dims is None or tuple(image.GetSize()) != tuple(dims):
        return False
    origin, spacing, direction = volume_geometry_lps(volume_node)
    return (np.allclose(image.GetSpacing(), spacing, rtol=1e-5, atol=0)
            and np.allclose(image.GetOrigin(), origin, rtol=0, atol=tolerance_mm)
            and np.allclose(image.GetDirection(), direction, rtol=0, atol=1e-5))


def voxel_buffer(volume_node, shape_zyx: Sequence[int], dtype, ijk_to_ras: vtk.vtkMatrix4x4) -> np.ndarray:
    """A writable (k, j, i) view of `volume_node`'s voxels, the node placed by `ijk_to_ras`.

    Re-uses the node's existing voxel memory when size and type already match (re-runs), so large
    results are written once, in place. Call `voxels_modified` after filling it.
    """
    volume_node.SetIJKToRASMatrix(ijk_to_ras)
    vtk_type = numpy_support.get_vtk_array_type(np.dtype(dtype))
    dims = (int(shape_zyx[2]), int(shape_zyx[1]), int(shape_zyx[0]))
    image = volume_node.GetImageData()
    if image is None:
        image = vtk.vtkImageData()
        volume_node.SetAndObserveImageData(image)
    scalars = image.GetPointData().GetScalars()
    if (image.GetDimensions() != dims or scalars is None or scalars.GetDataType() != vtk_type
            or scalars.GetNumberOfComponents() != 1):
        image.SetDimensions(dims)
        image.AllocateScalars(vtk_type, 1)
    return array_view(volume_node)


def ijk_to_ras_of(volume_node) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix


def voxels_modified(volume_node) -> None:
    """The notifications Slicer sends when a volume's voxels change (as slicer.util does)."""
    image = volume_node.GetImageData()
    image.GetPointData().GetScalars().Modified()
    image.Modified()
    volume_node.StorableModified()
    volume_node.Modified()
    volume_node.InvokeEvent(slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, volume_node)


def set_voxels_on_grid_of(volume_node, array_zyx: np.ndarray, reference_node) -> None:
    """Give `volume_node` the reference's exact IJK-to-RAS and a copy of `array_zyx`."""
    buffer = voxel_buffer(volume_node, array_zyx.shape, array_zyx.dtype, ijk_to_ras_of(reference_node))
    buffer[...] = array_zyx
    voxels_modified(volume_node)


def ct_warnings(image: sitk.Image, name: str) -> list[str]:
    """Plausibility problems of a CT (not Hounsfield units? odd spacing?), one line each naming it."""
    from ..files.reading import check_ct_like

    return check_ct_like(image, name)


def world_to_volume_ras(volume_node, point_world: Sequence[float]) -> tuple[float, float, float]:
    """A world (scene) RAS point in the volume's own RAS space (differs under a parent transform)."""
    point = [float(v) for v in point_world]
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return tuple(point)  # type: ignore[return-value]
    world_to_local = vtk.vtkGeneralTransform()
    transform_node.GetTransformFromWorld(world_to_local)
    return tuple(float(v) for v in world_to_local.TransformPoint(point))  # type: ignore[return-value]


def volume_shown_in_slice_views(scene):
    """The CT the user is looking at (background of a slice view), else the first CT in the scene."""
    from .roles import collection_items

    for composite in collection_items(scene.GetNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
        if is_ct_candidate(node):
            return node
    return next((n for n in collection_items(scene.GetNodesByClass("vtkMRMLScalarVolumeNode")) if is_ct_candidate(n)),
                None)
