"""Figures of the phantom-vs-real comparison (`attention-unet-segment realism`): axial slices
through the pancreas of every case, and the HU of each tissue, real cases beside phantoms."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import PathLike
from .figures import PREDICTION_COLOR, new_figure, save_figure, window_ct

TISSUES = ("pancreas", "liver", "spleen", "kidneys", "stomach", "aorta", "portal_vein", "fat")
REAL_MARKERS = ("o", "s", "D", "^", "v")


def _pancreas_slice(ct: sitk.Image, labels: sitk.Image, pancreas_ids: Sequence[int]):
    """Axial slice (LPS, anterior up) through the pancreas centroid: (CT 0..1, mask, width mm, height mm)."""
    ct, labels = (sitk.DICOMOrient(i, "LPS") for i in (ct, labels))
    array, mask = sitk.GetArrayViewFromImage(ct), np.isin(sitk.GetArrayViewFromImage(labels), pancreas_ids)
    z = int(round(np.nonzero(mask)[0].mean())) if mask.any() else array.shape[0] // 2
    sx, sy = ct.GetSpacing()[:2]
    return window_ct(array[z]), mask[z], array.shape[2] * sx, array.shape[1] * sy


def slices_png(path: Optional[PathLike], cases: Sequence[tuple[str, sitk.Image, sitk.Image, Sequence[int]]],
               title: str = "") -> np.ndarray:
    """One axial panel per (name, ct, labels, pancreas label values), drawn to scale in mm."""
    columns = min(len(cases), 4)
    rows = -(-len(cases) // columns)
    figure = new_figure(3.3 * columns, 3.4 * rows + 0.4, facecolor="black")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.ravel()[len(cases):]:
        axes.set_axis_off()
    for axes, (name, ct, labels, ids) in zip(grid.ravel(), cases):
        image, mask, width, height = _pancreas_slice(ct, labels, ids)
        axes.imshow(image, cmap="gray", vmin=0, vmax=1, extent=(0, width, height, 0), interpolation="bilinear")
        if mask.any():
            x = (np.arange(mask.shape[1]) + 0.5) * width / mask.shape[1]
            y = (np.arange(mask.shape[0]) + 0.5) * height / mask.shape[0]
            axes.contour(x, y, mask.astype(np.float32), levels=[0.5], colors=[np.array(PREDICTION_COLOR) / 255],
                         linewidths=1.0)
        axes.set_title(f"{name}  ({width:.0f} mm)", color="white", fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(title or "axial slice through the pancreas (W400/L40), pancreas outlined", color="white")
    return save_figure(figure, path)


def hu_png(path: Optional[PathLike], real: Mapping[str, dict], phantoms: Mapping[str, dict],
           title: str = "") -> np.ndarray:
    """Mean +- std HU of each tissue: real cases as coloured markers, phantoms in grey."""
    figure = new_figure(9.0, 4.2)
    axes = figure.add_subplot()
    positions = np.arange(len(TISSUES))

    def series(measures: dict) -> tuple[np.ndarray, np.ndarray]:
        mean = [measures.get(f"{t}.hu_mean", np.nan) for t in TISSUES]
        std = [measures.get(f"{t}.hu_std", 0.0) for t in TISSUES]
        return np.array(mean, float), np.array(std, float)

    for index, measures in enumerate(phantoms.values()):
        mean, std = series(measures)
        axes.errorbar(positions + 0.25 + 0.04 * index, mean, std, fmt=".", color="0.55", capsize=2,
                      label=f"phantoms (n={len(phantoms)})" if index == 0 else None)
    for index, (name, measures) in enumerate(real.items()):
        mean, std = series(measures)
        axes.errorbar(positions - 0.25 + 0.12 * index, mean, std, fmt=REAL_MARKERS[index % len(REAL_MARKERS)],
                      capsize=3, label=name)
    axes.set_xticks(positions)
    axes.set_xticklabels([t.replace("_", " ") for t in TISSUES])
    axes.set_ylabel("HU (mean ± std in the label)")
    axes.axhline(0, color="0.8", linewidth=0.8)
    axes.grid(True, axis="y", color="0.9")
    axes.legend(fontsize=8, ncol=2)
    axes.set_title(title or "HU per tissue: real CT vs phantoms")
    return save_figure(figure, path)
