"""Dice (and HD95) after each click of the simulated user (evaluation/clicks.py) on one CT.

    truth (any grid) -> click 1 at its deepest point -> segment -> score on the truth's grid
      -> click k+1 at the deepest point of result k's largest error -> segment -> score ...

`segment_click(point_ras, include)` is whatever answers a click with a labelmap: an interactive
session (the result after all clicks so far), or a baseline that ignores later clicks. Scores
are computed on the truth's grid; a labelmap on another grid is resampled onto it (nearest).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from .clicks import Click, first_click, next_click
from .metrics import dice, hd95

SegmentClick = Callable[[tuple[float, float, float], bool], sitk.Image]


@dataclass
class ClickScore:
    click: int  # 1-based
    include: bool
    point_ras: tuple[float, float, float]
    dice: float
    hd95_mm: Optional[float]
    predicted_ml: float
    seconds: float  # to answer this click


def index_to_ras(grid: sitk.Image, index_zyx) -> tuple[float, float, float]:
    """The RAS point (mm) of a voxel (z, y, x) of `grid`."""
    x, y, z = grid.TransformIndexToPhysicalPoint([int(v) for v in reversed(index_zyx)])
    return -x, -y, z


def on_truth_grid(labelmap: sitk.Image, truth: sitk.Image, value: int = 1) -> np.ndarray:
    """The (z, y, x) bool mask of `value` in `labelmap`, on the truth's grid."""
    same = (labelmap.GetSize() == truth.GetSize()
            and np.allclose(labelmap.GetSpacing(), truth.GetSpacing(), atol=1e-6)
            and np.allclose(labelmap.GetOrigin(), truth.GetOrigin(), atol=1e-4)
            and np.allclose(labelmap.GetDirection(), truth.GetDirection(), atol=1e-6))
    if not same:
        labelmap = sitk.Resample(labelmap, truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayViewFromImage(labelmap) == value


def simulate_user(segment_click: SegmentClick, truth: sitk.Image, clicks: int, with_hd95: bool = False,
                  label_value: int = 1, on_score: Optional[Callable[[ClickScore], None]] = None) -> list[ClickScore]:
    """Score `clicks` clicks of the simulated user; stops early when nothing is left to correct
    (a perfect result), repeating its score for the remaining clicks."""
    truth_mask = sitk.GetArrayViewFromImage(truth) != 0
    if not truth_mask.any():
        raise ValueError("the truth is empty: there is nothing to click on")
    spacing = tuple(reversed(truth.GetSpacing()))
    voxel_ml = float(np.prod(truth.GetSpacing())) / 1000.0
    scores: list[ClickScore] = []
    click: Optional[Click] = first_click(truth_mask, spacing)
    for k in range(1, clicks + 1):
        if click is None:  # nothing left to correct
            scores.append(ClickScore(**{**asdict(scores[-1]), "click": k, "seconds": 0.0}))
            continue
        point = index_to_ras(truth, click.index_zyx)
        t0 = time.perf_counter()
        labelmap = segment_click(point, click.include)
        seconds = time.perf_counter() - t0
        predicted = on_truth_grid(labelmap, truth, label_value)
        score = ClickScore(k, click.include, point, dice(predicted, truth_mask),
                           hd95(predicted, truth_mask, spacing) if with_hd95 else None,
                           float(np.count_nonzero(predicted)) * voxel_ml, seconds)
        scores.append(score)
        if on_score is not None:
            on_score(score)
        click = next_click(truth_mask, predicted, spacing)
    return scores
