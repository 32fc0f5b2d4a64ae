"""Colon, small-bowel loops (random walks through the free space), their contents, lymph nodes."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .grid import Box, Grid
from .materials import FAT, MAT
from .painting import Filler, PaintOp, Patient
from .shapes import (
    BIG,
    Ellipsoid,
    Lobulated,
    Section,
    Shape,
    Tube,
    Waves,
    part_on_box,
    push_clear,
)


def bowel_fill(rng: np.random.Generator, kind: str, air_level: Optional[float],
                fluid: int, air: int) -> Filler:
    waves = Waves(rng, 5.0, 16)

    def fill(x, y, z, d):
        if kind == "stool":  # faeces: mottled gas and solid matter
            noise = waves(x, y, z)
            content = np.where(noise > 1.1, MAT["colon_air"], MAT["stool"]).astype(np.uint8)
        else:
            content = np.full(x.shape, fluid, np.uint8)
        if air_level is not None:
            content[y < air_level] = air
        return content
    return fill


def colon(p: Patient, keep_clear: Sequence[Shape]) -> tuple[list[PaintOp], list[Tube]]:
    """Ascending (right), hepatic flexure, sagging transverse (anterior), splenic flexure, descending."""
    rng = p.rng
    fv = p.fat_visceral
    sag = rng.uniform(-40, 5)
    pts = p.path([(-95, -15, -110), (-100, -20, -50), (-92, -52, -2), (-50, -100 - 20 * fv, -15 + sag),
                  (0, -108 - 25 * fv, -25 + sag), (50, -98 - 20 * fv, -5 + sag), (90, -40, 38),
                  (106, -10, 0), (100, -2, -50), (96, -6, -110)], 6.0, retro=False)
    radii = np.array([24, 24, 22, 20, 20, 20, 18, 17, 16, 16]) * rng.uniform(0.8, 1.15)
    pts[2:7] = push_clear(pts[2:7], radii[2:7] + 4.0, keep_clear, 3.0, (0, -1, -0.5))  # hangs in front
    tube = Tube(pts, radii, step=8)
    shape = Lobulated(tube, Waves(rng, 20.0, 8), 2.5)  # haustra-ish bulges
    air = float(pts[:, 1].min() - rng.uniform(0, 15))
    op = PaintOp("colon", shape, [(0.0, MAT["colon_wall"]), (rng.uniform(1.5, 2.5),
                                                         bowel_fill(rng, "stool", air, 0, MAT["colon_air"]))],
                 replace=FAT)
    return [op], [tube]


class FreeSpace:
    """Coarse (4 mm) map of the clearance (mm) left in the lower abdomen by placed organs."""

    def __init__(self, obstacles: Sequence[Shape], cavity: Section, step: float = 4.0):
        self.step = step
        self.lo = np.array([-cavity.a, cavity.cy - cavity.b_ant, -130.0])
        self.hi = np.array([cavity.a, 35.0, 35.0])
        self.size = tuple(int(v) for v in np.ceil((self.hi - self.lo) / step).astype(int) + 1)
        grid = Grid(self.lo, np.full(3, step), np.eye(3), self.size)
        full: Box = (slice(0, self.size[2]), slice(0, self.size[1]), slice(0, self.size[0]))
        self.clearance = np.broadcast_to(-cavity.sdf_box(grid, full), grid.shape_zyx).copy()
        for shape in obstacles:
            self.clearance = np.minimum(self.clearance, part_on_box(shape, grid, full, BIG))
        self.xyz = grid.coords(full)

    def at(self, point: np.ndarray) -> float:
        idx = np.round((point - self.lo) / self.step).astype(int)
        if np.any(idx < 0) or np.any(idx >= np.array(self.size)):
            return -1.0
        return float(self.clearance[idx[2], idx[1], idx[0]])

    def claim(self, points: Sequence[np.ndarray], radius: float) -> None:
        """Mark a placed loop as occupied, so later loops keep out of it."""
        x, y, z = self.xyz
        for q in points:
            near = (np.abs(x - q[0]) < 30) & (np.abs(y - q[1]) < 30) & (np.abs(z - q[2]) < 30)
            dist = np.sqrt((x - q[0]) ** 2 + (y - q[1]) ** 2 + (z - q[2]) ** 2) - radius
            np.minimum(self.clearance, np.where(near, dist, BIG), out=self.clearance)


def _walk(rng: np.random.Generator, free: FreeSpace, point: np.ndarray, radius: float) -> list[np.ndarray]:
    """A loop as a persistent random walk (7 mm steps) that keeps clear of organs and itself."""
    direction = rng.normal(0, 1, 3)
    direction /= np.linalg.norm(direction)
    pts = [point]
    lag = int(math.ceil(2 * (radius + 2) / 7.0)) + 1  # points this close along the loop may touch
    for _ in range(int(rng.integers(15, 60))):
        moved = False
        for attempt in range(10):
            trial = direction + rng.normal(0, 0.55 + 0.2 * attempt, 3)
            trial /= np.linalg.norm(trial)
            candidate = pts[-1] + trial * 7.0
            own = np.array(pts[:-lag]) if len(pts) > lag else np.empty((0, 3))
            if free.at(candidate) > radius + 1.5 and (
                    not len(own) or np.min(np.linalg.norm(own - candidate, axis=1)) > 2 * radius + 2):
                direction, moved = trial, True
                break
        if not moved:
            break
        pts.append(candidate)
    return pts


def small_bowel(p: Patient, obstacles: Sequence[Shape], cavity: Section, start: np.ndarray) -> list[PaintOp]:
    """Loops as constrained random walks through the free space of the lower abdomen.

    They pack against each other and against the organs instead of running through them.
    Contents: fluid, positive oral contrast, gas over fluid, or collapsed (all wall, i.e.
    enhancing soft tissue: the classic pancreas mimic).
    """
    rng = p.rng
    free = FreeSpace(obstacles, cavity)
    ops = []
    for loop in range(int(rng.integers(16, 26))):
        kind = rng.choice(["fluid", "collapsed", "contrast", "air"], p=[0.5, 0.25, 0.15, 0.10])
        radius = rng.uniform(5.0, 7.5) if kind == "collapsed" else rng.uniform(9.0, 13.5)
        # The first loop (jejunum) begins beside the duodenojejunal flexure, the rest anywhere free.
        candidates = [np.asarray(start, float) + np.array([12.0, -12.0, -8.0]) * (1 + 0.5 * k)
                      for k in range(4)] if loop == 0 else []
        candidates += [free.lo + rng.random(3) * (free.hi - free.lo) for _ in range(40)]
        point = next((c for c in candidates if free.at(c) > radius + 3), None)
        if point is None:
            continue
        pts = _walk(rng, free, point, radius)
        free.claim(pts, radius)
        if len(pts) < 3:
            continue
        tube = Tube(np.array(pts), np.full(len(pts), radius), step=7)
        wall = rng.uniform(1.8, 3.0)
        if kind == "collapsed":
            layers = [(0.0, MAT["bowel_wall"])]
        else:
            content = {"fluid": MAT["bowel_fluid"], "contrast": MAT["bowel_contrast"], "air": MAT["bowel_fluid"]}[kind]
            air = float(np.min(np.array(pts)[:, 1]) + rng.uniform(-radius, 0)) if kind == "air" else None
            layers = [(0.0, MAT["bowel_wall"]), (wall, bowel_fill(rng, "fluid", air, content, MAT["bowel_air"]))]
        ops.append(PaintOp("small bowel", tube, layers, replace=FAT))
    return ops


def lymph_nodes(p: Patient) -> list[PaintOp]:
    """A few soft-tissue nodes in peripancreatic and para-aortic fat (classic false positives)."""
    ops = []
    for _ in range(int(p.rng.integers(2, 6))):
        centre = p.jitter((p.rng.uniform(-30, 40), p.rng.uniform(-70, -30), p.rng.uniform(-40, 30)), 0) + p.shift
        radii = p.rng.uniform(3, 8, 3)
        ops.append(PaintOp("lymph node", Ellipsoid(centre, radii), [(0.0, MAT["lymph_node"])], replace=FAT))
    return ops
