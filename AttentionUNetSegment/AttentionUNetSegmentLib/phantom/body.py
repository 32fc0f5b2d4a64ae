"""The body wall, the skeleton, the lung bases and the scanner couch."""

from __future__ import annotations

import math

import numpy as np

from .materials import FAT, MAT, SOFT
from .painting import PaintOp, Patient
from .shapes import Ellipsoid, EllipticCylinder, Section, Shape, ShapeUnion, Tube


def body_wall(p: Patient) -> tuple[list[PaintOp], Section, Section]:
    """Skin, subcutaneous fat, the muscular wall and the visceral cavity.

    Visceral fat enlarges the cavity (organs stay, fat fills between them); subcutaneous fat is
    thickest anteriorly and laterally, thinnest over the back that lies on the table.
    """
    fv, fs = p.fat_visceral, p.fat_subcutaneous
    cy = -20.0
    # Outline size along z: narrowest near the waist (~L3), flaring over the lower ribs.
    z_scale = (float(p.rng.uniform(0.02, 0.06)), float(p.rng.uniform(0.02, 0.06)))
    cavity = Section((0, cy), 118 * p.scale + 22 * fv, 92 * p.scale + 40 * fv, 58.0, 2.3, 3.2, z_scale=z_scale)
    m_lat, m_ant, m_post = p.rng.uniform(10, 16), p.rng.uniform(9, 14), p.rng.uniform(12, 18)
    wall = Section((0, cy), cavity.a + m_lat, cavity.b_ant + m_ant, cavity.b_post + m_post, 2.3, 2.8, z_scale=z_scale)
    t_ant, t_lat, t_post = 7 + 48 * fs, 5 + 32 * fs, 5 + 24 * fs
    back = 102.0 + p.spine_y  # the erector spinae reach ~80 mm behind the vertebral body
    skin = Section((0, cy), wall.a + t_lat, wall.b_ant + t_ant, back + t_post, 2.2, 2.6, z_scale=z_scale)
    skin_depth = p.rng.uniform(1.5, 2.5)
    ops = [
        PaintOp("body", skin, [(0.0, MAT["skin"]), (skin_depth, MAT["fat_subcutaneous"])]),
        PaintOp("abdominal wall", wall, [(0.0, MAT["muscle"])]),
        PaintOp("cavity", cavity, [(0.0, MAT["fat_visceral"])]),
    ]
    # Erector spinae: two muscle columns either side of the spinous processes.
    for side in (-1, 1):
        column = Tube([(side * 36, p.spine_y + 56, -300), (side * 36, p.spine_y + 56, 300)], [26.0, 26.0],
                      metric=(0.8, 1.05, 1.0), step=200)
        ops.append(PaintOp("erector spinae", column, [(0.0, MAT["muscle"])],
                           replace=frozenset({MAT["fat_subcutaneous"], MAT["fat_visceral"]})))
    return ops, skin, cavity


def _vertebral_arch(rng: np.random.Generator, canal_y: float, body_back: float, z: float, lumbar: bool) -> Shape:
    """Pedicles, laminae, transverse and spinous processes around the canal at height `z`.

    They are plates several mm high, so they are stretched in z (metric < 1); lumbar transverse
    processes are long and flat, thoracic ones short and angled back towards the ribs.
    """
    parts = []
    for side in (-1, 1):
        parts.append(Tube([(side * 9, body_back - 2, z), (side * 12, canal_y + 2, z)], [4.5, 4.5],
                          metric=(1, 1, 0.45), step=50))
        parts.append(Tube([(side * 12, canal_y + 2, z), (side * 6, canal_y + 11, z - 4), (0, canal_y + 13, z - 5)],
                          [4.0, 3.5, 3.5], metric=(1, 1, 0.35), step=4))
        tip = (side * (rng.uniform(38, 46) if lumbar else 30), canal_y + (4 if lumbar else 10), z)
        parts.append(Tube([(side * 12, canal_y + 1, z), tip], [3.5, 2.5], metric=(1, 1, 0.8), step=50))
    parts.append(Tube([(0, canal_y + 12, z - 5), (0, canal_y + 40, z - 14)], [4.0, 4.5], metric=(1.6, 1, 0.4), step=50))
    return ShapeUnion(*parts)


def _back_muscles(p: Patient, body_half_width: float) -> list[PaintOp]:
    """Psoas (small at L1, thick by L4, beside the vertebral bodies) and quadratus lumborum."""
    ops = []
    y0, rx = p.spine_y, body_half_width
    for side in (-1, 1):
        psoas = Tube([(side * (rx + 8), y0 - 2, 60), (side * (rx + 14), y0 - 4, 0), (side * (rx + 24), y0 - 8, -70),
                      (side * (rx + 30), y0 - 12, -150)], [3.0, 9.0, 17.0, 22.0], metric=(1, 1.1, 1), step=8)
        ops.append(PaintOp("psoas", psoas, [(0.0, MAT["muscle"])], replace=FAT))
        quadratus = Tube([(side * 55, y0 + 32, 30), (side * 62, y0 + 30, -40), (side * 68, y0 + 28, -150)],
                         [6.0, 13.0, 16.0], metric=(0.8, 1.3, 1), step=10)
        ops.append(PaintOp("quadratus lumborum", quadratus, [(0.0, MAT["muscle"])], replace=FAT))
    return ops


def spine(p: Patient) -> tuple[list[PaintOp], dict]:
    """Vertebrae T9-L5 (cortex, marrow, posterior elements), discs, the canal and back muscles."""
    ops: list[PaintOp] = []
    rng = p.rng
    y0 = p.spine_y
    pitch = rng.uniform(32, 37) * p.scale
    rx, ry = rng.uniform(20, 24) * p.scale, rng.uniform(15, 18) * p.scale
    canal_y = y0 + ry + 9
    canal = Tube([(0, canal_y, -300), (0, canal_y, 300)], [9.0, 9.0], metric=(0.85, 1.1, 1), step=100)
    ops.append(PaintOp("spinal canal", canal, [(0.0, MAT["spinal_canal"])], replace=SOFT))
    bone = [(0.0, MAT["bone_cortex"]), (1.4, MAT["bone_marrow"])]
    levels = {}
    for k in range(-4, 5):  # L1 is k = 0; negative k are caudal
        zc = k * pitch
        height = pitch - rng.uniform(7.5, 9.5)
        name = ("T12", "T11", "T10", "T9")[k - 1] if k > 0 else f"L{1 - k}"
        levels[name] = [0.0, y0, zc]
        ops.append(PaintOp(f"{name} body", EllipticCylinder((0, y0, zc), rx, ry, height / 2), bone))
        disc = EllipticCylinder((0, y0, zc - pitch / 2), rx * 0.98, ry * 0.98, (pitch - height) / 2)
        ops.append(PaintOp(f"{name}-disc", disc, [(0.0, MAT["disc"])]))
        arch = _vertebral_arch(rng, canal_y, y0 + ry, zc + 0.15 * height, lumbar=k <= 0)
        ops.append(PaintOp(f"{name} arch", arch, [(0.0, MAT["bone_cortex"]), (1.2, MAT["bone_marrow"])],
                           replace=SOFT | {MAT["spinal_canal"], MAT["fat_subcutaneous"]}))
    return ops + _back_muscles(p, rx), levels


def ribs(p: Patient, cavity: Section, pitch: float = 34.0) -> list[PaintOp]:
    """Lower ribs 8-12 curving down and forward in the wall; 11 and 12 float, 8-10 meet cartilage."""
    ops = []
    rng = p.rng
    for rib in range(8, 13):
        z_head = (12 - rib) * pitch + 30 + rng.normal(0, 3)
        reach = {8: 0.93, 9: 0.88, 10: 0.8, 11: 0.55, 12: 0.38}[rib] * math.pi
        drop = rng.uniform(90, 130) * (1.0 if rib < 11 else 0.7)
        for side in (-1, 1):
            angles = np.linspace(0.22 * math.pi, reach, 12)
            pts = []
            for a in angles:
                xy = cavity.boundary_point(a, outward=5.0)
                frac = (a - angles[0]) / (math.pi - angles[0])
                pts.append((side * abs(xy[0]), xy[1], z_head - drop * frac))
            bony = int(len(pts) * (0.78 if rib <= 10 else 1.0))
            radius = rng.uniform(4.5, 6.0)
            ops.append(PaintOp(f"rib {rib}", Tube(pts[:bony + 1], [radius] * (bony + 1), metric=(1, 1, 1.35), step=6),
                               [(0.0, MAT["rib_cortex"]), (1.3, MAT["rib_marrow"])],
                               replace=SOFT | {MAT["fat_subcutaneous"]}))
            if bony < len(pts):
                ops.append(PaintOp(f"costal cartilage {rib}", Tube(pts[bony:], [radius * 0.9] * len(pts[bony:]),
                                                                    metric=(1, 1, 1.35), step=6),
                                   [(0.0, MAT["cartilage"])], replace=SOFT | {MAT["fat_subcutaneous"]}))
    return ops


def lungs(p: Patient) -> list[PaintOp]:
    """Lung bases: domes above liver and spleen, deepest in the posterior costophrenic recesses."""
    ops = []
    for side in (-1, 1):
        dome = Ellipsoid(p.jitter((side * 80, 15, 190), 6), (75, 95, 150 - 10 * side))
        recess = Ellipsoid(p.jitter((side * 82, 55 + p.spine_y, 130), 5), (55, 32, 105))
        ops.append(PaintOp("lung", ShapeUnion(dome, recess), [(0.0, MAT["lung"])], replace=SOFT,
                           halo=(3.0, MAT["muscle"], FAT)))  # the diaphragm
    return ops


def couch(p: Patient, skin: Section) -> list[PaintOp]:
    """The scanner table under the back: thin dense shell around a foam core."""
    if p.rng.random() < 0.2:
        return []
    top = skin.cy + skin.b_post + p.rng.uniform(0.0, 4.0)
    slab = Section((0, top + 30), 230, 30, 14, 8.0, 8.0)
    return [PaintOp("couch", slab, [(0.0, MAT["couch_shell"]), (2.5, MAT["couch_foam"])],
                    replace=frozenset({MAT["air"]}))]
