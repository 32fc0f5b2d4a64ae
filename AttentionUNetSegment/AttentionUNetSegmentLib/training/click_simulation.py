"""The simulated user of training: first clicks, corrective clicks from the model's own
mistakes, and previous masks, as the interactive-segmentation literature trains (RITM,
nnInteractive, DeepEdit).

Per sample: the first include click lies inside the target (at its deepest point or at a
random interior point), sometimes with further include clicks or exclude clicks beside the
target, as a real user places them. Then some rounds of correction: the model predicts from
the current clicks and mask (no gradient), its prediction is cleaned as inference cleans it
(components the include clicks touch, holes filled) and becomes the previous mask, and the next
click goes where the evaluation protocol puts it (evaluation.clicks: the deepest point of the
largest error). Sometimes a round adds no click, and sometimes the previous mask is a damaged
copy of the truth, so that late, nearly right states are seen early in training.
All arrays are one patch (z, y, x) on the model grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from ..core.click_merge import merge_click
from ..core.postprocessing import components_at_points, fill_holes
from ..core.prompts import ClickEncoding, network_input
from ..evaluation.clicks import deepest_point, next_click


@dataclass
class ClickPolicy:
    """How the simulated user behaves; probabilities are per sample unless said."""

    deepest_first: float = 0.5  # first click at the deepest point (else a random interior one)
    extra_include: float = 0.2  # 1-2 more include clicks from the start
    extra_exclude: float = 0.15  # 1-2 exclude clicks just outside the target
    round_weights: tuple[float, ...] = (0.25, 0.2, 0.2, 0.2, 0.15)  # P(0, 1, 2, ... model rounds)
    synthetic_previous: float = 0.25  # start from a damaged truth plus its corrective click
    silent_round: float = 0.1  # per round: the mask is updated, no click is added


@dataclass
class ClickState:
    """One sample's prompts: clicks as (z, y, x) indices of the patch, and the previous mask."""

    include: list = field(default_factory=list)
    exclude: list = field(default_factory=list)
    previous: Optional[np.ndarray] = None  # (z, y, x) bool
    newest: Optional[tuple] = None  # (index, include) of the last click, for the merge

    def network_input(self, image: np.ndarray, encoding: ClickEncoding) -> np.ndarray:
        return network_input(image, self.include, self.exclude, self.previous, encoding)  # (4, z, y, x)

    def add(self, click) -> None:
        (self.include if click.include else self.exclude).append(click.index_zyx)
        self.newest = (click.index_zyx, click.include)


def _random_voxel(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    points = np.argwhere(mask)
    return tuple(int(v) for v in points[rng.integers(len(points))])  # type: ignore[return-value]


def _eroded(mask: np.ndarray, radius: int) -> np.ndarray:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.BinaryErode(image, [radius] * 3)).astype(bool)


def _dilated(mask: np.ndarray, radius: int) -> np.ndarray:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.BinaryDilate(image, [radius] * 3)).astype(bool)


def first_clicks(target: np.ndarray, spacing_zyx, policy: ClickPolicy, rng: np.random.Generator) -> ClickState:
    """The clicks a user starts with: one inside the target, sometimes a few more."""
    state = ClickState()
    inner = _eroded(target, 1)
    inner = inner if inner.any() else target
    if rng.random() < policy.deepest_first:
        state.include.append(deepest_point(target, spacing_zyx))
    else:
        state.include.append(_random_voxel(inner, rng))
    if rng.random() < policy.extra_include:
        state.include += [_random_voxel(inner, rng) for _ in range(rng.integers(1, 3))]
    if rng.random() < policy.extra_exclude:
        band = _dilated(target, 3) & ~target
        if band.any():
            state.exclude += [_random_voxel(band, rng) for _ in range(rng.integers(1, 3))]
    return state


def damaged(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible imperfect result: the truth eroded or dilated, with a part cut away or a
    blob of its surroundings added."""
    mask = target.copy()
    if rng.random() < 0.5:
        mask = _eroded(mask, 1) if rng.random() < 0.5 else _dilated(mask, 1)
    centre = np.asarray(_random_voxel(target, rng) if rng.random() < 0.5 else _random_voxel(_dilated(target, 4), rng))
    radius = rng.uniform(3, 10)
    grid = np.ogrid[tuple(slice(0, n) for n in target.shape)]
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2
    mask = mask & ~ball if rng.random() < 0.5 else mask | (ball & _dilated(target, 5))
    return mask


def cleaned(prediction: np.ndarray, state: ClickState, spacing_zyx) -> np.ndarray:
    """The prediction as inference keeps it: the components the include clicks touch, filled."""
    if not state.include:
        return fill_holes(prediction)
    return fill_holes(components_at_points(prediction, state.include, spacing_zyx))


def correct(state: ClickState, target: np.ndarray, prediction: np.ndarray, spacing_zyx,
            policy: ClickPolicy, rng: np.random.Generator, encoding_radius: float = 2.0) -> None:
    """One round: the cleaned prediction, merged as inference merges it (core.click_merge: a
    corrective click changes only what is connected to it), becomes the previous mask; then a
    corrective click."""
    kept = cleaned(prediction, state, spacing_zyx)
    if state.previous is not None and state.newest is not None:
        kept = merge_click(state.previous, kept, state.newest[0], state.newest[1], encoding_radius)
    state.previous = kept
    if rng.random() < policy.silent_round:
        return
    click = next_click(target, kept, spacing_zyx)
    if click is not None:
        state.add(click)


def simulate(images: list[np.ndarray], targets: list[np.ndarray], predict: Callable[[np.ndarray], np.ndarray],
             encoding: ClickEncoding, spacing_zyx, policy: ClickPolicy,
             rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The network input (B, 4, z, y, x) after a random number of correction rounds, and that
    number. `predict(inputs (B, 4, z, y, x)) -> (B, z, y, x) bool` is the model, without gradient."""
    states = [first_clicks(t, spacing_zyx, policy, rng) for t in targets]
    for state, target in zip(states, targets):
        if rng.random() < policy.synthetic_previous:
            state.previous = damaged(target, rng)  # a late, nearly right state, then its click
            click = next_click(target, state.previous, spacing_zyx)
            if click is not None:
                state.add(click)
    weights = np.asarray(policy.round_weights, dtype=np.float64)
    rounds = int(rng.choice(len(weights), p=weights / weights.sum()))
    for _ in range(rounds):
        inputs = np.stack([s.network_input(i, encoding) for s, i in zip(states, images)])
        predictions = predict(inputs)
        for state, target, prediction in zip(states, targets, predictions):
            correct(state, target, prediction, spacing_zyx, policy, rng, encoding.radius_voxels)
    return np.stack([s.network_input(i, encoding) for s, i in zip(states, images)]), rounds
