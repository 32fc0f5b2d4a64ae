"""Painting shapes into a material volume, in anatomical order, and the patient's random draws.

Shapes are painted each only over the materials it may displace (bowel fills fat, it never cuts
the liver), which keeps the organs in contact the way they are in a real abdomen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .grid import Grid, box_shape
from .shapes import Section, Shape

# A layer's material is a fixed id, or a function of the voxels' patient coordinates and signed
# distance that returns one id per voxel (air above a fluid level, mottled stool, fat clefts).
Filler = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class PaintOp:
    """Paint `shape`: each (depth, material) layer fills the voxels deeper than `depth` mm.

    Only materials in `replace` are overwritten (None = any). `halo` = (margin mm, material,
    replaceable) first paints a shell around the shape, e.g. the fat plane that separates the
    pancreas from the liver.
    """

    name: str
    shape: Shape
    layers: Sequence[tuple[float, Union[int, Filler]]]
    replace: Optional[frozenset] = None
    halo: Optional[tuple[float, int, frozenset]] = None


def _lut(materials: frozenset) -> np.ndarray:
    table = np.zeros(256, bool)
    table[list(materials)] = True
    return table


def paint(volume: np.ndarray, grid: Grid, op: PaintOp) -> None:
    """Apply one PaintOp to the material volume (z, y, x) in place."""
    margin = op.halo[0] if op.halo else 0.0
    lo, hi = op.shape.aabb()
    box = grid.index_box(lo - margin, hi + margin)
    if box is None:
        return
    shape = box_shape(box)
    sdf = np.broadcast_to(op.shape.sdf_box(grid, box), shape)
    view = volume[box]
    allowed = None if op.replace is None else _lut(op.replace)[view]
    if op.halo:
        shell = (sdf < margin) & (sdf >= 0) & _lut(op.halo[2])[view]
        np.copyto(view, op.halo[1], where=shell)
    coords = None
    for depth, material in op.layers:
        mask = sdf < -depth
        if allowed is not None:
            mask &= allowed
        if callable(material):
            if not mask.any():
                continue
            if coords is None:
                coords = grid.coords(box)
            x, y, z = (np.broadcast_to(c, shape)[mask] for c in coords)
            view[mask] = material(x, y, z, sdf[mask])
        else:
            np.copyto(view, material, where=mask)


@dataclass
class Patient:
    """The random draws that make one abdomen different from the next."""

    rng: np.random.Generator
    scale: float          # overall organ size
    fat_subcutaneous: float   # 0 = lean, 1 = obese
    fat_visceral: float
    shift: np.ndarray     # common displacement of the pancreas and its neighbours (mm)
    spine_y: float        # antero-posterior position of the spine relative to the viscera

    def jitter(self, point, sigma: float = 4.0) -> np.ndarray:
        return np.asarray(point, float) + self.rng.normal(0.0, sigma, 3)

    def path(self, points, sigma: float = 4.0, retro: bool = True) -> np.ndarray:
        """Control points with individual jitter (and the common retroperitoneal shift)."""
        p = np.asarray(points, float) * np.array([self.scale, self.scale, self.scale])
        p = p + self.rng.normal(0.0, sigma, p.shape)
        return p + (self.shift if retro else 0.0)


def sample_patient(rng: np.random.Generator) -> Patient:
    return Patient(
        rng=rng,
        scale=float(rng.uniform(0.92, 1.08)),
        fat_subcutaneous=float(rng.beta(1.6, 2.2)),
        fat_visceral=float(rng.beta(1.6, 2.2)),
        shift=rng.normal(0.0, [5.0, 4.0, 6.0]),
        spine_y=float(rng.normal(0.0, 3.0)),
    )


@dataclass
class Anatomy:
    """Everything needed to paint one abdomen, plus landmarks for the case metadata."""

    ops: list[PaintOp]
    body: Section
    landmarks: dict[str, list[float]]
    pancreas: Shape
    pancreas_target_ml: float


def render_materials(anatomy: Anatomy, grid: Grid) -> np.ndarray:
    """Paint the anatomy on `grid`: a (z, y, x) uint8 volume of material ids (air = 0)."""
    volume = np.zeros(grid.shape_zyx, np.uint8)
    for op in anatomy.ops:
        paint(volume, grid, op)
    return volume
