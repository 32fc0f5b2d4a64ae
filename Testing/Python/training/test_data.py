"""Training data: dataset layouts, label mapping, the shared preprocessing, patch sampling,
augmentation alignment and the determinism of the patch stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.preprocessing import IntensitySpec, preprocess
from AttentionUNetSegmentLib.training.augmentation import AugmentationConfig, augment_batch
from AttentionUNetSegmentLib.training.data import (
    Case,
    apply_label_map,
    check_merge_is_safe,
    find_cases,
    is_synthetic_dataset,
    num_classes,
    parse_label_map,
)
from AttentionUNetSegmentLib.training.loading import LoadedCase, background_value, load_case
from AttentionUNetSegmentLib.training.sampling import PatchDataset, PatchSampler


def sphere_case(size_xyz=(40, 36, 24), spacing=(2.0, 2.0, 2.0), seed=0,
                direction=None) -> tuple[sitk.Image, sitk.Image]:
    """CT-like noise (-100 HU) with a 60 HU sphere; label 1 = sphere, 2 = a 'tumour' inside."""
    rng = np.random.default_rng(seed)
    x, y, z = size_xyz
    zz, yy, xx = np.mgrid[:z, :y, :x]
    centre = (z / 2 + rng.uniform(-2, 2), y / 2 + rng.uniform(-3, 3), x / 2 + rng.uniform(-3, 3))
    r2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    label = (r2 < 6.0 ** 2).astype(np.uint8)
    label[r2 < 2.0 ** 2] = 2
    hu = np.where(label > 0, 60.0, -100.0) + rng.normal(0, 10, label.shape)
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    labels = sitk.GetImageFromArray(label)
    for im in (image, labels):
        im.SetSpacing(spacing)
        im.SetOrigin((-20.0, 10.0, 5.0))
        if direction is not None:
            im.SetDirection(direction)
    return image, labels


def write_decathlon(root: Path, n: int = 3, nnunet_names: bool = False,
                    description: str = "Synthetic pancreas phantoms") -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTs").mkdir()
    training = []
    for i in range(n):
        image, label = sphere_case(seed=i)
        name = f"pancreas_{i + 1:03d}"
        image_name = f"{name}_0000.nii.gz" if nnunet_names else f"{name}.nii.gz"
        sitk.WriteImage(image, str(root / "imagesTr" / image_name))
        sitk.WriteImage(label, str(root / "labelsTr" / f"{name}.nii.gz"))
        training.append({"image": f"./imagesTr/{name}.nii.gz",
                         "label": f"./labelsTr/{name}.nii.gz"})
    # The Decathlon archives carry macOS resource forks; they must be skipped.
    (root / "imagesTr" / "._pancreas_001.nii.gz").write_bytes(b"\0\5\26\7junk")
    meta = {"name": "Pancreas", "description": description,
            "labels": {"0": "background", "1": "pancreas", "2": "cancer"}}
    if not nnunet_names:
        meta["training"] = training
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


# ---------------------------------------------------------------------------------------------
# Discovery


def test_decathlon_layout(tmp_path):
    root = write_decathlon(tmp_path / "Task07_Pancreas")
    cases = find_cases(root)
    assert [c.id for c in cases] == ["pancreas_001", "pancreas_002", "pancreas_003"]
    assert all(c.image_path.parent.name == "imagesTr" and c.label_path.parent.name == "labelsTr"
               for c in cases)
    assert is_synthetic_dataset(root)


def test_nnunet_names_without_training_list(tmp_path):
    root = write_decathlon(tmp_path / "ds", nnunet_names=True, description="Real CT")
    cases = find_cases(root)
    assert [c.id for c in cases] == ["pancreas_001", "pancreas_002", "pancreas_003"]
    assert cases[0].image_path.name == "pancreas_001_0000.nii.gz"
    assert not is_synthetic_dataset(root)


def test_nih_style_folders_pair_by_case_number(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in (1, 2, 11):
        image, label = sphere_case(seed=i)
        sitk.WriteImage(image, str(tmp_path / "images" / f"PANCREAS_{i:04d}.nii.gz"))
        sitk.WriteImage(label, str(tmp_path / "labels" / f"label{i:04d}.nii.gz"))
    cases = find_cases(tmp_path)
    assert [c.id for c in cases] == ["PANCREAS_0001", "PANCREAS_0002", "PANCREAS_0011"]
    assert [c.label_path.name for c in cases] == ["label0001.nii.gz", "label0002.nii.gz",
                                                  "label0011.nii.gz"]


def test_flat_ct_label_pairs(tmp_path):
    for name in ("a", "b"):
        image, label = sphere_case()
        sitk.WriteImage(image, str(tmp_path / f"{name}_ct.nii.gz"))
        sitk.WriteImage(label, str(tmp_path / f"{name}_label.nii.gz"))
    assert [c.id for c in find_cases(tmp_path)] == ["a", "b"]


def test_merge_refused_for_multi_organ_datasets(tmp_path):
    root = write_decathlon(tmp_path / "ds", n=1)
    check_merge_is_safe(root)                       # pancreas + cancer: merging is right
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"0": "background", "1": "liver", "2": "pancreas"}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="--labels 2:1"):
        check_merge_is_safe(root)
    meta["labels"], meta["synthetic"] = {"background": 0, "pancreas": 1}, True   # nnU-Net v2
    (root / "dataset.json").write_text(json.dumps(meta))
    check_merge_is_safe(root)
    assert is_synthetic_dataset(root)


def test_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no training cases"):
        find_cases(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        find_cases(tmp_path / "missing")

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image, label = sphere_case()
    sitk.WriteImage(image, str(tmp_path / "images" / "case1.nii.gz"))
    sitk.WriteImage(image, str(tmp_path / "images" / "case2.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "labels" / "case1.nii.gz"))
    with pytest.raises(InputError, match="without a label"):
        find_cases(tmp_path)

    # A label on another grid (here: other spacing) is refused before training starts.
    label.SetSpacing((2.0, 2.0, 3.0))
    sitk.WriteImage(label, str(tmp_path / "labels" / "case2.nii.gz"))
    with pytest.raises(InputError) as error:
        find_cases(tmp_path)
    assert str(error.value) == (f"{tmp_path / 'labels' / 'case2.nii.gz'}: not on the grid of case2.nii.gz "
                                "(label vs image): spacing (2, 2, 3) vs (2, 2, 2) mm (x, y, z)")


# ---------------------------------------------------------------------------------------------
# Labels and loading


def test_label_maps():
    label = np.array([0, 1, 2, 3], np.uint8)
    assert parse_label_map("merge") is None and num_classes(None) == 2
    assert apply_label_map(label, None).tolist() == [0, 1, 1, 1]        # tumour -> pancreas
    assert apply_label_map(label, parse_label_map("1:1")).tolist() == [0, 1, 0, 0]
    mapping = parse_label_map("1:1,2:2")
    assert num_classes(mapping) == 3 and apply_label_map(label, mapping).tolist() == [0, 1, 2, 0]
    # One syntax with evaluate and figure: a value (list) is that structure as class 1.
    assert parse_label_map("7") == {7: 1} and parse_label_map("2, 1") == {2: 1, 1: 1}
    for bad in ("1-1", "1:2", "x:1", "1,2:1", "0", "", "1:1:1"):
        with pytest.raises(InputError, match="--labels"):
            parse_label_map(bad)


def test_model_file_names_merged_classes_by_every_label_they_merge(tmp_path):
    from AttentionUNetSegmentLib.training.summary import label_infos

    labels = {"0": "background", "1": "pancreas", "2": "liver", "4": "kidney_right", "5": "kidney_left"}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}), encoding="utf-8")
    infos = label_infos(parse_label_map("1:1,2:2,4:3,5:3"), tmp_path)
    assert [info.name for info in infos] == ["Pancreas", "Liver", "Kidney_right + kidney_left"]
    assert [info.value for info in infos] == [1, 2, 3]


def test_load_case_uses_inference_preprocessing_and_aligns_label(tmp_path):
    # Non-canonical orientation and 1.5 mm voxels: the label must follow the image through
    # reorientation and resampling to 2 mm.
    direction = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
    image, label = sphere_case(spacing=(1.5, 1.5, 1.5), direction=direction)
    sitk.WriteImage(image, str(tmp_path / "x_ct.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "x_label.nii.gz"))
    (case,) = find_cases(tmp_path)
    spec = IntensitySpec()
    loaded = load_case(case, (2.0, 2.0, 2.0), spec)
    expected = preprocess(sitk.ReadImage(str(case.image_path)), (2.0, 2.0, 2.0), spec).array
    np.testing.assert_array_equal(loaded.image, expected)          # the one code path
    assert loaded.label.shape == loaded.image.shape
    assert set(np.unique(loaded.label)) == {0, 1}                   # 2 merged into 1
    inside, outside = loaded.image[loaded.label == 1], loaded.image[loaded.label == 0]
    assert inside.mean() > 0.0 > -1.0 > outside.mean()              # 60 HU vs -100 HU
    # Volume preserved within a voxel layer: 4/3 pi 6^3 voxels of 1.5 mm, in 2 mm voxels.
    assert abs(loaded.label.sum() - 4 / 3 * np.pi * 6.0 ** 3 * 1.5 ** 3 / 8.0) < 40
    assert np.isclose(background_value(spec), -2.0)                 # -1024 HU clipped to -160

    # Cache: written once, then memory-mapped with identical content.
    cached = load_case(case, (2.0, 2.0, 2.0), spec, cache_dir=tmp_path / "cache")
    again = load_case(case, (2.0, 2.0, 2.0), spec, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    assert isinstance(again.image, np.memmap)
    np.testing.assert_array_equal(again.image, cached.image)
    np.testing.assert_array_equal(again.label, loaded.label)


# ---------------------------------------------------------------------------------------------
# Patch sampling


def _block_case(shape=(64, 64, 64)) -> LoadedCase:
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[50:52, 5:7, 40:42] = 1
    return LoadedCase("block", image, label)


def test_patch_shapes_and_padding():
    small = LoadedCase("small", np.ones((10, 20, 30), np.float32), np.ones((10, 20, 30), np.uint8))
    sampler = PatchSampler((16, 32, 32), foreground_probability=0.5, pad_value=-2.0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        image, label, _ = sampler.sample(small, rng)
        assert image.shape == label.shape == (16, 32, 32)
        assert image.dtype == np.float32 and label.dtype == np.uint8
        # The whole small volume fits in the patch: exactly its voxels are 1, the rest padding.
        assert (image == 1).sum() == label.sum() == 10 * 20 * 30
        assert set(np.unique(image)) == {-2.0, 1.0}


def test_foreground_oversampling_rate():
    case = _block_case()
    sampler = PatchSampler((16, 16, 16), foreground_probability=0.33)
    rng = np.random.default_rng(2)
    samples = [sampler.sample(case, rng) for _ in range(900)]
    forced = np.array([s[2] for s in samples])
    has_fg = np.array([s[1].any() for s in samples])
    assert abs(forced.mean() - 0.33) < 0.05               # binomial sd ~ 0.016
    assert has_fg[forced].all()                           # forced patches contain the target
    assert has_fg[~forced].mean() < 0.1                   # random ones rarely do (8 of 64^3)
    # Centred: the foreground block sits in the middle of a forced patch (shifted inside
    # the volume where the block is near an edge).
    assert PatchSampler((16, 16, 16), 0.0).sample(case, rng)[2] is False


def test_forced_patches_centre_on_the_pancreas_not_on_context_organs():
    # A large "liver" (class 2) and a small pancreas (1): centring on any label would put
    # nearly every forced patch on the liver, far from the pancreas.
    case = _block_case()
    case = LoadedCase("organs", case.image, np.where(np.arange(64)[:, None, None] < 30, 2, case.label)
                      .astype(np.uint8))
    assert (case.label.ravel()[case.foreground] == 1).all() and case.foreground.size == 8
    sampler = PatchSampler((16, 16, 16), foreground_probability=1.0)
    rng = np.random.default_rng(3)
    assert all((label == 1).any() for _, label, _ in (sampler.sample(case, rng) for _ in range(50)))


def test_patch_stream_is_deterministic_per_rank_and_epoch():
    case = _block_case((40, 40, 40))
    sampler = PatchSampler((16, 16, 16), 0.33, -2.0)

    def stream(rank=0, epoch=0, workers=0):
        dataset = PatchDataset([case], sampler, samples_per_epoch=6, batch_size=2, seed=7,
                               rank=rank)
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers)
        return torch.cat([image for image, _ in loader])

    first = stream()
    assert first.shape == (6, 1, 16, 16, 16)
    image, label = next(iter(PatchDataset([case], sampler, 1)))
    assert image.shape == (1, 16, 16, 16) and label.shape == (16, 16, 16)
    assert label.dtype == torch.int64
    assert torch.equal(first, stream())                      # same seed, same patches
    assert torch.equal(first, stream(workers=2))             # whatever the worker count
    assert not torch.equal(first, stream(rank=1))            # each rank its own stream
    assert not torch.equal(first, stream(epoch=1))           # each epoch new patches


# ---------------------------------------------------------------------------------------------
# Augmentation


def _ellipsoid_batch(n=2, size=32) -> tuple[torch.Tensor, torch.Tensor]:
    zz, yy, xx = torch.meshgrid(*(torch.arange(size, dtype=torch.float32),) * 3, indexing="ij")
    inside = ((zz - 12) / 5) ** 2 + ((yy - 18) / 8) ** 2 + ((xx - 13) / 4) ** 2 < 1
    label = inside.long()[None].repeat(n, 1, 1, 1)                 # (n, z, y, x)
    image = (label.float() * 2 - 1)[:, None]                       # (n, 1, z, y, x): -1 / +1
    return image, label


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_spatial_augmentation_keeps_image_and_label_aligned():
    image, label = _ellipsoid_batch()
    config = AugmentationConfig(affine_probability=1.0, rotation_z_deg=40,
                                rotation_other_deg=20, scale_range=(0.75, 1.25),
                                intensity_probability=0.0)
    generator = torch.Generator().manual_seed(3)
    aug_image, aug_label = augment_batch(image, label, config, generator, pad_value=-1.0)
    assert aug_image.shape == image.shape and aug_label.shape == label.shape
    assert aug_label.dtype == torch.int64 and set(aug_label.unique().tolist()) <= {0, 1}
    for i in range(2):
        assert _dice(aug_label[i] == 1, label[i] == 1) < 0.9          # it really moved
        assert _dice(aug_label[i] == 1, aug_image[i, 0] > 0) > 0.95   # and stayed aligned
    # Same generator seed, same result (also on CUDA, where the generator lives there).
    again = augment_batch(image, label, config, torch.Generator().manual_seed(3), -1.0)
    assert torch.equal(again[0], aug_image) and torch.equal(again[1], aug_label)


def test_rotation_is_physical_on_non_cubic_patches():
    # affine_grid works in [-1, 1] per axis; without converting to physical units a
    # rotation on a 16x32x48 patch would shear a sphere into an ellipsoid.
    zz, yy, xx = torch.meshgrid(torch.arange(16.), torch.arange(32.), torch.arange(48.),
                                indexing="ij")
    sphere = ((zz - 7.5) ** 2 + (yy - 15.5) ** 2 + (xx - 23.5) ** 2 < 36).long()[None]
    config = AugmentationConfig(affine_probability=1.0, rotation_z_deg=60,
                                rotation_other_deg=0, scale_range=(1.0, 1.0),
                                intensity_probability=0.0)
    for seed in range(3):
        _, rotated = augment_batch(sphere[:, None].float(), sphere, config,
                                   torch.Generator().manual_seed(seed))
        assert _dice(rotated[0] == 1, sphere[0] == 1) > 0.93


def test_zoom_out_pads_with_background():
    image, label = _ellipsoid_batch(1)
    config = AugmentationConfig(affine_probability=1.0, rotation_z_deg=0, rotation_other_deg=0,
                                scale_range=(0.5, 0.5), intensity_probability=0.0)
    out, out_label = augment_batch(image + 3, label, config, torch.Generator().manual_seed(0),
                                   pad_value=-5.0)
    assert torch.allclose(out[0, 0, 0, 0, 0], torch.tensor(-5.0))   # corner outside: air
    assert out_label[0, 0, 0, 0] == 0
    assert 0.1 < out_label.sum() / label.sum() < 0.15                 # half size: 1/8 volume


def test_flips_and_intensity():
    image, label = _ellipsoid_batch()
    config = AugmentationConfig(affine_probability=0.0, flip_axes=("x",), flip_probability=1.0,
                                intensity_probability=0.0)
    flipped, flipped_label = augment_batch(image, label, config, torch.Generator())
    assert torch.equal(flipped, image.flip(4)) and torch.equal(flipped_label, label.flip(3))
    # Flips are off by default (the pancreas is not left-right symmetric).
    assert AugmentationConfig().flip_axes == ()

    config = AugmentationConfig(affine_probability=0.0, intensity_probability=1.0)
    changed, same_label = augment_batch(image, label, config, torch.Generator().manual_seed(1))
    assert torch.equal(same_label, label) and torch.isfinite(changed).all()
    assert not torch.equal(changed, image)
    inside, outside = changed[0, 0][label[0] == 1].mean(), changed[0, 0][label[0] == 0].mean()
    assert inside > outside                                          # contrast kept
    assert _dice(same_label[0] == 1, changed[0, 0] > (inside + outside) / 2) > 0.9
    off = augment_batch(image, label, AugmentationConfig(enabled=False), torch.Generator())
    assert off[0] is image and off[1] is label


def test_case_dataclass_is_hashable_and_ordered_ids(tmp_path):
    case = Case("a", tmp_path / "a.nii.gz", tmp_path / "a_label.nii.gz")
    assert {case: 1}[Case("a", tmp_path / "a.nii.gz", tmp_path / "a_label.nii.gz")] == 1
