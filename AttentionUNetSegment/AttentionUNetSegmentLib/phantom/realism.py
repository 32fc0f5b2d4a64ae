"""Phantom-vs-real measurements: the numbers that say whether a phantom looks like a real scan.

`measure_case(ct, labels, organ_ids)` measures one labelled CT the same way whether it is a real
scan or a phantom: the body (size, field of view, slices, truncation, table, arms), the HU of
each labelled organ and of fat and the air around the body, where the organs sit
relative to the body, and the noise and texture in fat and in the liver. `REAL_CASES` names the
real cases of `shared/data` and their label values; `compare` puts them beside phantoms.

Arrays are (z, y, x) after `DICOMOrient(..., "LPS")`: x to the patient's left, y to posterior,
z to superior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.postprocessing import largest_component

ORGANS = ("pancreas", "liver", "spleen", "kidneys", "stomach", "aorta", "portal_vein")
FAT_HU, BODY_HU = (-190.0, -30.0), -500.0
_TS_EXAMPLE = {"spleen": (1,), "kidneys": (2, 3), "liver": (5,), "stomach": (6,), "pancreas": (7,),
               "aorta": (52,), "portal_vein": (64,)}
_TS_DATASET = {"spleen": (1,), "kidneys": (2, 3), "liver": (5,), "stomach": (6,), "pancreas": (7,),
               "aorta": (9,), "portal_vein": (11,)}


@dataclass(frozen=True)
class RealCase:
    """A real CT of shared/data with its label file and the label values of each organ."""

    name: str
    ct: str
    labels: str
    organ_ids: dict[str, tuple[int, ...]]


REAL_CASES = (
    RealCase("NIH 0001", "nih-pancreas-ct-0001/ct.nii.gz", "nih-pancreas-ct-0001/pancreas.nii.gz",
             {"pancreas": (1,)}),
    RealCase("TS s0009", "totalsegmentator-s0009/ct.nii.gz", "totalsegmentator-s0009/organs.nii.gz", _TS_DATASET),
    RealCase("TS example", "totalsegmentator-example/ct.nii.gz",
             "totalsegmentator-example/totalsegmentator_labels.nii.gz", _TS_EXAMPLE),
)
PHANTOM_ORGAN_IDS = {"pancreas": (1,), "liver": (2,), "spleen": (3,), "kidneys": (4, 5), "stomach": (6,),
                     "aorta": (11,), "portal_vein": (13,)}


def read_real_case(data_dir: Path, case: RealCase) -> tuple[sitk.Image, sitk.Image]:
    """CT and labels of `case`, the labels on the CT's grid (nearest neighbour if they differ)."""
    paths = [Path(data_dir) / case.ct, Path(data_dir) / case.labels]
    for path in paths:
        if not path.exists():
            raise InputError(path, "real case missing (pass --data with the shared/data folder)")
    ct, labels = (sitk.ReadImage(str(p)) for p in paths)
    if labels.GetSize() != ct.GetSize() or not np.allclose(labels.GetOrigin(), ct.GetOrigin(), atol=1e-3):
        labels = sitk.Resample(labels, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return ct, labels


# ----------------------------------------------------------------------------------- masks


def _slice_fill(mask: np.ndarray) -> np.ndarray:
    """Holes filled slice by slice (gas in bowel and lungs is inside the body)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image = sitk.JoinSeries([sitk.BinaryFillhole(image[:, :, k]) for k in range(image.GetSize()[2])])
    return sitk.GetArrayFromImage(image) != 0


def body_mask(ct: np.ndarray) -> np.ndarray:
    """The patient: the largest object above -500 HU, opened in-plane so the table comes off."""
    opened = sitk.BinaryMorphologicalOpening(sitk.GetImageFromArray((ct > BODY_HU).astype(np.uint8)), [3, 3, 0])
    return _slice_fill(largest_component(sitk.GetArrayFromImage(opened)))


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labelled = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
    array = sitk.GetArrayFromImage(labelled)
    return array, int(array.max())


def _erode(mask: np.ndarray, radius_zyx: Sequence[int]) -> np.ndarray:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.BinaryErode(image, [int(r) for r in reversed(radius_zyx)])) != 0


def _local_mean(ct: np.ndarray, mask: np.ndarray, sigma_zyx_vox: Sequence[float]) -> np.ndarray:
    """Mean of `ct` over `mask` in a Gaussian window (normalised convolution: edges unbiased)."""
    variance = [float(s) ** 2 for s in reversed(sigma_zyx_vox)]

    def blur(a: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray(a.astype(np.float32))
        return sitk.GetArrayFromImage(sitk.DiscreteGaussian(image, variance=variance, maximumKernelWidth=64,
                                                            useImageSpacing=False))
    weight = blur(mask)
    return blur(np.where(mask, ct, 0.0)) / np.maximum(weight, 1e-6)


# ----------------------------------------------------------------------------- measures


def _noise_and_texture(ct: np.ndarray, mask: np.ndarray, spacing_zyx: np.ndarray) -> tuple[float, float]:
    """(noise HU, texture ratio) in a homogeneous region `mask`.

    Noise: the std of the HU minus their local mean (Gaussian, sigma 4 mm), inside the region
    eroded by about 3 mm. Texture: the same std after averaging over 3 mm blocks, divided by the
    full-resolution one: white noise at 0.8 mm gives about 0.1, grain correlated over 1-2 mm
    about 0.3-0.5, a smooth slab 1.
    """
    inner = _erode(mask, np.maximum(1, np.round(3.0 / spacing_zyx)).astype(int))
    if inner.sum() < 500:
        return math.nan, math.nan
    residual = ct - _local_mean(ct, mask, 4.0 / spacing_zyx)
    noise = float(residual[inner].std())
    block = np.maximum(1, np.round(3.0 / spacing_zyx)).astype(int)
    if np.all(block[1:] == 1):
        return noise, math.nan  # voxels of 3 mm already: no finer grain to compare with
    shape = [n // b * b for n, b in zip(ct.shape, block)]
    crop = tuple(slice(0, n) for n in shape)
    fold = [v for n, b in zip(shape, block) for v in (n // b, b)]
    coarse_res = residual[crop].reshape(fold).mean(axis=(1, 3, 5))
    coarse_in = inner[crop].reshape(fold).all(axis=(1, 3, 5))
    coarse = float(coarse_res[coarse_in].std()) if coarse_in.sum() > 20 else math.nan
    return noise, coarse / noise if noise > 0 else math.nan


def _body_geometry(ct: np.ndarray, body: np.ndarray, spacing: np.ndarray, level: int) -> dict:
    rows, cols = np.nonzero(body[level])
    sz, sy, sx = spacing
    out = {
        "fov_x_mm": ct.shape[2] * sx, "fov_y_mm": ct.shape[1] * sy, "z_extent_mm": ct.shape[0] * sz,
        "slice_mm": sz, "pixel_mm": sx,
        "body_width_mm": (cols.max() - cols.min() + 1) * sx if cols.size else math.nan,
        "body_depth_mm": (rows.max() - rows.min() + 1) * sy if rows.size else math.nan,
        "body_area_cm2": rows.size * sx * sy / 100.0,
        # A body cut by the field of view (cropped scans, big patients) touches the image edge.
        "body_truncated": float(bool(body[:, :, [0, -1]].any() or body[:, [0, -1], :].any())),
    }
    return out


def _table_and_arms(ct: np.ndarray, body: np.ndarray, spacing: np.ndarray) -> dict:
    """Objects outside the body: a flat one behind the back is the table, big lateral ones arms."""
    labelled, count = _components((ct > BODY_HU) & ~body)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    zs, ys, xs = np.nonzero(body)
    centre_x, back = xs.mean(), ys.max()
    half_width = (xs.max() - xs.min()) / 2.0
    table = arms = 0.0
    for index in np.flatnonzero(sizes[1:] * voxel_ml > 5.0) + 1:
        where = np.nonzero(labelled == index)
        if where[1].mean() > back - 15.0 / spacing[1] and np.ptp(where[1]) * spacing[1] < 80:
            table = 1.0
        elif abs(where[2].mean() - centre_x) > 0.6 * half_width and sizes[index] * voxel_ml > 50.0:
            arms = 1.0
    return {"table": table, "arms": arms}


def _organ_stats(ct: np.ndarray, mask: np.ndarray, body: np.ndarray, spacing: np.ndarray,
                 reference_z: Optional[float]) -> dict:
    values = ct[mask]
    zc, yc, xc = (float(c.mean()) for c in np.nonzero(mask))
    rows, cols = np.nonzero(body[int(round(zc))])
    stats = {"ml": values.size * float(np.prod(spacing)) / 1000.0, "hu_mean": float(values.mean()),
             "hu_std": float(values.std()), "hu_p5": float(np.percentile(values, 5)),
             "hu_p95": float(np.percentile(values, 95)), "fat_fraction": float(np.mean(values < -30))}
    if rows.size:
        # Body-normalised centroid: -1..1 from the patient's right to left and front to back.
        stats["x_body"] = (xc - (cols.min() + cols.max()) / 2) / max((cols.max() - cols.min()) / 2, 1)
        stats["y_body"] = (yc - (rows.min() + rows.max()) / 2) / max((rows.max() - rows.min()) / 2, 1)
    if reference_z is not None:
        stats["z_from_pancreas_mm"] = (zc - reference_z) * spacing[0]
    stats["cut_by_scan"] = float(bool(mask[0].any() or mask[-1].any()))
    return stats


def measure_case(ct_image: sitk.Image, label_image: sitk.Image, organ_ids: dict[str, Sequence[int]]) -> dict:
    """Every measurement of one labelled CT, as a flat {name: number} dict (NaN = not measurable)."""
    ct_image, label_image = (sitk.DICOMOrient(i, "LPS") for i in (ct_image, label_image))
    ct = sitk.GetArrayFromImage(ct_image).astype(np.float32)
    labels = sitk.GetArrayFromImage(label_image)
    spacing = np.array(ct_image.GetSpacing()[::-1], float)
    body = body_mask(ct)
    masks = {name: np.isin(labels, ids) for name, ids in organ_ids.items()}
    masks = {name: m for name, m in masks.items() if m.any()}
    pancreas_z = float(np.nonzero(masks["pancreas"])[0].mean()) if "pancreas" in masks else None
    level = int(round(pancreas_z)) if pancreas_z is not None else ct.shape[0] // 2
    out = _body_geometry(ct, body, spacing, level)
    out.update(_table_and_arms(ct, body, spacing))
    organs = np.zeros(ct.shape, bool)
    for name, mask in masks.items():
        organs |= mask
        for key, value in _organ_stats(ct, mask, body, spacing, None if name == "pancreas" else pancreas_z).items():
            out[f"{name}.{key}"] = value
    fat = body & (ct >= FAT_HU[0]) & (ct <= FAT_HU[1]) & ~organs
    out["fat.hu_mean"], out["fat.hu_std"] = float(ct[fat].mean()), float(ct[fat].std())
    out["fat.fraction_of_body"] = float(fat.sum() / max(body.sum(), 1))
    # Air: away (3 voxels) from the body and anything else solid, inside the reconstruction circle.
    solid = sitk.BinaryDilate(sitk.GetImageFromArray((body | (ct > BODY_HU)).astype(np.uint8)), [3, 3, 0])
    air = ct[(sitk.GetArrayFromImage(solid) == 0) & (ct > -1100)]
    out["air.hu_mean"], out["air.hu_std"] = (float(air.mean()), float(air.std())) if air.size else (math.nan,) * 2
    out["noise.fat_hu"], out["texture.fat_ratio"] = _noise_and_texture(ct, fat, spacing)
    if "liver" in masks:
        out["noise.liver_hu"], out["texture.liver_ratio"] = _noise_and_texture(ct, masks["liver"], spacing)
    return out


def compare(data_dir: Path, phantom_cases: Sequence[tuple[str, sitk.Image, sitk.Image]],
            log: Callable[[str], None] = lambda line: None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Measure the real cases of `data_dir` and the given (name, ct, labels) phantoms."""
    real = {}
    for case in REAL_CASES:
        log(f"measuring {case.name} ...")
        real[case.name] = measure_case(*read_real_case(data_dir, case), case.organ_ids)
    phantoms = {}
    for name, ct, labels in phantom_cases:
        log(f"measuring {name} ...")
        phantoms[name] = measure_case(ct, labels, PHANTOM_ORGAN_IDS)
    return real, phantoms


def format_table(real: dict[str, dict], phantoms: dict[str, dict]) -> str:
    """Real cases side by side with the phantoms' median [min..max]; one metric a line."""
    keys = list(dict.fromkeys(k for m in (*real.values(), *phantoms.values()) for k in m))
    header = (f"{'metric':<28}" + "".join(f"{name:>12}" for name in real)
              + f"   phantoms (n={len(phantoms)}) median [min..max]")
    lines = [header, "-" * len(header)]
    for key in keys:
        cells = "".join(f"{_number(m.get(key, math.nan)):>12}" for m in real.values())
        values = np.array([m.get(key, math.nan) for m in phantoms.values()], float)
        values = values[np.isfinite(values)]
        summary = (f"{_number(np.median(values))} [{_number(values.min())}..{_number(values.max())}]"
                   if values.size else "-")
        lines.append(f"{key:<28}{cells}   {summary}")
    return "\n".join(lines)


def _number(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
