"""pipeline + restore: the cheap ways back onto the CT grid give the same answer as resampling
everything, whatever the CT's orientation; maps on their own grids carry exact geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.core.geometry import coarse_grid
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.options import CleanupOptions, MapOptions, SegmentationOptions, WindowOptions
from AttentionUNetSegmentLib.core.pipeline import segment_image
from AttentionUNetSegmentLib.core.preprocessing import preprocess, restore_to_input
from AttentionUNetSegmentLib.core.restore import box_slices, foreground_box, restore_box, restore_in_slabs
from AttentionUNetSegmentLib.files.modelfile import tiny_test_model


def _ct(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), size=(70, 60, 25), spacing=(0.9, 0.8, 2.5)) -> sitk.Image:
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin((-30.0, 12.0, 40.0))
    image.SetDirection(direction)
    return image


def _tilted() -> tuple[float, ...]:
    a = math.radians(12)
    return (math.cos(a), 0, math.sin(a), 0, 1, 0, -math.sin(a), 0, math.cos(a))


ORIENTATIONS = {
    "lps": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "ras": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "permuted": (0, 1, 0, 0, 0, 1, 1, 0, 0),
    "tilted": _tilted(),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_box_restore_decides_every_voxel_as_the_full_resample(orientation):
    ct = _ct(ORIENTATIONS[orientation])
    grid = preprocess(ct, (2.0, 2.0, 2.0), _intensity()).grid
    shape = tuple(reversed(grid.GetSize()))
    rng = np.random.default_rng(0)
    # Smooth probabilities with a few blobs above 0.5, some touching the grid's edge.
    probability = np.clip(rng.normal(0.2, 0.05, size=shape), 0, 1).astype(np.float32)
    probability[2:6, 5:9, 4:12] = 0.9
    probability[0:2, -3:, -4:] = 0.7
    full = restore_to_input(probability[None], grid, ct)[0] > 0.5
    box = foreground_box(probability, grid, ct)
    assert box is not None
    boxed = np.zeros(full.shape, dtype=bool)
    boxed[box_slices(box)] = restore_box(probability, grid, ct, box) > 0.5
    np.testing.assert_array_equal(boxed, full)
    assert full.any() and full[box_slices(box)].sum() == full.sum()
    # One central blob: the box is a small part of the CT; nothing above 0.5: no box at all.
    probability[0:2, -3:, -4:] = 0.2
    box = foreground_box(probability, grid, ct)
    assert np.prod(box[1]) < 0.25 * full.size
    assert foreground_box(np.minimum(probability, 0.5), grid, ct) is None


def _intensity():
    from AttentionUNetSegmentLib.core.preprocessing import IntensitySpec

    return IntensitySpec()


@pytest.mark.parametrize("orientation", ["ras", "tilted"])
def test_slab_restore_equals_the_whole_resample(orientation):
    ct = _ct(ORIENTATIONS[orientation])
    grid = coarse_grid(preprocess(ct, (2.0, 2.0, 2.0), _intensity()).grid, 4)
    values = np.random.default_rng(1).random(tuple(reversed(grid.GetSize()))).astype(np.float32)
    expected = restore_to_input(values[None], grid, ct)[0]
    np.testing.assert_allclose(restore_in_slabs(values, grid, ct, slab_slices=7), expected, atol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    return tiny_test_model(seed=0)


def test_model_grid_maps_have_exact_geometry_and_match_the_ct_grid_maps(real_ct_path, tiny):
    model, spec = tiny
    ct = sitk.ReadImage(str(real_ct_path))
    common = dict(window=WindowOptions(device="cpu", precision="fp32"),
                  cleanup=CleanupOptions(keep_largest=False, fill_holes=False))
    on_ct = segment_image(ct, model, spec, SegmentationOptions(
        **common, maps=MapOptions(probabilities=True, attention_grid="ct", probability_grid="ct")))
    on_model = segment_image(ct, model, spec, SegmentationOptions(**common, maps=MapOptions(probabilities=True)))
    # Same labels whatever grid the maps are kept on; the default is each map's own grid.
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(on_ct.labelmap),
                                  sitk.GetArrayViewFromImage(on_model.labelmap))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(on_ct.labelmap) > 0,
                                  sitk.GetArrayViewFromImage(on_ct.probabilities) > 0.5)
    grid = preprocess(ct, spec.spacing_zyx, spec.intensity).grid
    assert on_model.probabilities.GetSize() == grid.GetSize()
    for name, scale in model.gate_scales.items():
        coarse = coarse_grid(grid, scale)
        image = on_model.attention[name]
        assert image.GetSize() == coarse.GetSize() and on_ct.attention[name].GetSize() == ct.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), coarse.GetOrigin(), atol=1e-9)
        np.testing.assert_allclose(image.GetSpacing(), coarse.GetSpacing(), atol=1e-12)
        np.testing.assert_allclose(image.GetDirection(), coarse.GetDirection(), atol=1e-12)
        # The CT-grid map is the coarse map resampled in physical space: what a viewer shows.
        resampled = restore_to_input(sitk.GetArrayFromImage(image)[None], image, ct)[0]
        np.testing.assert_allclose(sitk.GetArrayViewFromImage(on_ct.attention[name]), np.clip(resampled, 0, 1),
                                   atol=1e-6)
    stages = {"preprocess", "inference", "restore", "postprocess", "total"}
    assert set(on_ct.seconds) == stages
    with pytest.raises(InputError, match="the attention grid must be one of model, ct; got 'coarse'"):
        MapOptions(attention_grid="coarse")
