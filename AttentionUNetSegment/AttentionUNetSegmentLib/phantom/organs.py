"""Solid and upper hollow organs: kidneys, liver, spleen, pancreas, duodenum, stomach, gallbladder."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

from .bowel import bowel_fill
from .materials import COLON, FAT, MAT, SOFT
from .painting import Filler, PaintOp, Patient
from .shapes import (
    Cut,
    Ellipsoid,
    HalfSpace,
    Intersect,
    Lobulated,
    Shape,
    ShapeUnion,
    Tube,
    Waves,
    push_clear,
    rotation_frame,
    shape_volume_ml,
)


def _stomach_fill(rng: np.random.Generator, air_level: float, food: bool) -> Filler:
    """Supine patient: gas rises anteriorly (smaller y), fluid or food lies posteriorly."""
    waves = Waves(rng, 9.0)

    def fill(x, y, z, d):
        content = np.full(x.shape, MAT["stomach_fluid"], np.uint8)
        if food:
            noise = waves(x, y, z)
            content[noise > -0.2] = MAT["stomach_food"]
            content[noise > 1.6] = MAT["stomach_air"]  # gas bubbles trapped in food
        content[y < air_level] = MAT["stomach_air"]
        return content
    return fill


def kidneys(p: Patient) -> tuple[list[PaintOp], dict[str, Shape]]:
    """Bean-shaped kidneys: cortex rim, medullary pyramids, sinus fat and pelvis at the hilum.

    The right kidney sits lower (the liver is above it); both poles tilt: upper poles medial and
    posterior, hila facing antero-medially.
    """
    ops, shapes = [], {}
    rng = p.rng
    for side, tag in ((-1, "r"), (1, "l")):
        zc = (-22.0 if side < 0 else -4.0) + rng.normal(0, 6)
        centre = np.array([side * 72.0, 22.0 + p.spine_y, zc]) + rng.normal(0, [4, 3, 0])
        long_axis = np.array([-side * 0.22, 0.25, 1.0])
        frame = rotation_frame(long_axis, (side * math.cos(0.5), -math.sin(0.5), 0))  # 2nd axis: lateral-anterior
        radii = np.array([rng.uniform(50, 58), rng.uniform(26, 30), rng.uniform(19, 23)]) * p.scale
        outer = Ellipsoid(centre, radii, frame)
        hilum_dir = frame[:, 1] * -1.0
        sinus = Ellipsoid(centre + hilum_dir * radii[1] * 0.55, radii * np.array([0.55, 0.55, 0.45]), frame)
        kidney = Cut(outer, [Ellipsoid(centre + hilum_dir * radii[1] * 1.15,
                                       radii * np.array([0.35, 0.45, 0.5]), frame)])
        waves = Waves(rng, 16.0, 8)
        cortex, medulla = MAT[f"kidney_cortex_{tag}"], MAT[f"kidney_medulla_{tag}"]
        cortical = rng.uniform(5.5, 8.0)

        def pyramids(x, y, z, d, waves=waves, cortex=cortex, medulla=medulla):
            # Pyramids are lobes of medulla separated by cortical columns of Bertin.
            return np.where(waves(x, y, z) > -0.4, medulla, cortex).astype(np.uint8)

        ops.append(PaintOp(f"kidney {tag}", kidney, [(0.0, cortex), (cortical, pyramids)],
                           replace=SOFT, halo=(2.5, MAT["fat_visceral"], frozenset({MAT["muscle"]}))))
        pelvis = Ellipsoid(sinus.centre + hilum_dir * 4, radii * np.array([0.25, 0.22, 0.18]), frame)
        ops.append(PaintOp(f"renal sinus {tag}", sinus, [(0.0, MAT["renal_sinus_fat"])],
                           replace=frozenset({cortex, medulla, MAT["fat_visceral"]})))
        ops.append(PaintOp(f"renal pelvis {tag}", pelvis, [(0.0, MAT["urine"])],
                           replace=frozenset({MAT["renal_sinus_fat"], cortex, medulla, MAT["fat_visceral"]})))
        shapes[f"kidney_{tag}"] = outer
        shapes[f"hilum_{tag}"] = Ellipsoid(centre + hilum_dir * radii[1] * 0.9, [1, 1, 1])
    return ops, shapes


def liver(p: Patient) -> tuple[list[PaintOp], Shape]:
    """Right lobe, left lobe and caudate; the inferior (visceral) surface slopes up medially."""
    rng = p.rng
    s = p.scale
    right = Ellipsoid(p.jitter((-72 * s, -12, 58 * s), 5), np.array([78, 92, 98]) * s * rng.uniform(0.93, 1.07))
    left = Ellipsoid(p.jitter((5 * s, -68, 78 * s), 6), np.array([62, 36, 45]) * s * rng.uniform(0.85, 1.15))
    caudate = Ellipsoid(p.jitter((-14, -22 + p.spine_y, 62), 3), np.array([22, 20, 32]) * s)
    low = rng.uniform(-45, -20)  # how far the right lobe reaches down (Riedel's lobe when low)
    # Inferior surface: plane through (x=-120, z=low) rising ~0.55 mm per mm towards the left.
    slope = rng.uniform(0.45, 0.65)
    cut = HalfSpace((slope, 0.22, -1.0), -120.0 * slope - low)
    liver = Lobulated(Intersect(ShapeUnion(right, left, caudate), cut), Waves(rng, 60.0, 6), 4.0)
    return [PaintOp("liver", liver, [(0.0, MAT["liver"])], replace=FAT)], liver


def spleen(p: Patient) -> tuple[list[PaintOp], Shape, np.ndarray]:
    """A crescent along the posterolateral ribs; its concave hilum faces antero-medially."""
    rng = p.rng
    centre = p.jitter((98 * p.scale, 38 + p.spine_y, 52), 5)
    frame = rotation_frame((0.55, -1.0, 0.15), (1.0, 0.55, 0.0))
    radii = np.array([rng.uniform(45, 58), rng.uniform(18, 26), rng.uniform(42, 55)]) * p.scale
    body = Ellipsoid(centre, radii, frame)
    hilum = centre - frame[:, 1] * radii[1] * 1.9
    notch = Ellipsoid(hilum, radii * np.array([0.8, 1.3, 0.7]), frame)  # the concave visceral surface
    spleen = Lobulated(Cut(body, [notch]), Waves(rng, 35.0, 6), 2.5)
    op = PaintOp("spleen", spleen, [(0.0, MAT["spleen"])], replace=FAT)
    return [op], spleen, centre - frame[:, 1] * radii[1] * 0.9


def pancreas(p: Patient, fat_extra: float = 0.0, fat_seed: int = 0) -> tuple[list[PaintOp], Tube, Shape, float, dict]:
    """Uncinate -> head (in the duodenal C) -> neck (in front of the SMV) -> body -> tail.

    The tail height varies (horizontal vs. oblique glands); radii are then scaled so the
    gland's volume lands on a drawn target; lobulation and fat clefts vary with age/fat.
    """
    rng = p.rng
    tail_rise = rng.uniform(-5, 25)
    pts = np.array([
        (2, -44, -27), (-15, -46, -26), (-31, -44, -14), (-35, -49, 0), (-24, -58, 9), (-6, -64, 11),
        (22, -59, 15), (52, -43, 20 + 0.4 * tail_rise), (76, -21, 26 + 0.8 * tail_rise),
        (94, -2, 30 + tail_rise)], float)
    sig = np.array([2, 2, 3, 3, 2, 2, 3, 5, 6, 6], float)[:, None]
    pts = pts * p.scale + rng.normal(0, 1, pts.shape) * sig + p.shift
    radii = np.array([5.5, 9, 14, 16, 12.5, 9, 10, 10, 9, 6]) * rng.uniform(0.9, 1.1, 10)
    metric = (1.0, rng.uniform(1.1, 1.3), rng.uniform(0.8, 0.9))
    centre_line = Tube(pts, radii, metric=metric, step=4)
    target = float(rng.uniform(55, 100))
    lobulation = rng.uniform(1.2, 2.6)
    waves = Waves(rng, rng.uniform(9, 14), 10)
    tube = calibrate_volume(centre_line, waves, lobulation, target)
    shape = Lobulated(tube, waves, lobulation)
    cleft_waves = Waves(rng, rng.uniform(7, 11), 12)
    fat_fraction = rng.uniform(0.02, 0.12)
    half_width = NormalDist().inv_cdf(0.5 + fat_fraction / 2)
    # Fatty infiltration (`fat_extra` of the volume): lobules of real fat, several mm across,
    # replacing parenchyma; drawn from their own stream so no other draw of the patient moves.
    fat_waves = Waves(np.random.default_rng(fat_seed), 9.0, 12) if fat_extra > 0 else None
    fat_level = NormalDist().inv_cdf(1.0 - fat_extra) if fat_extra > 0 else math.inf

    def clefts(x, y, z, d):
        # Interlobular fat: thin septa along the zero sheets of band-limited noise, which carve
        # the gland into lobules; they widen near the surface where the lobules fray.
        width = half_width * (1.0 + 0.5 * np.clip(1.0 + d / 4.0, 0, 1))
        tissue = np.where(np.abs(cleft_waves(x, y, z)) < width, MAT["pancreas_fat"], MAT["pancreas"]).astype(np.uint8)
        if fat_waves is not None:
            tissue[fat_waves(x, y, z) > fat_level] = MAT["pancreas_fat_lobule"]
        return tissue

    separates = frozenset({MAT["liver"], MAT["spleen"], MAT["stomach_wall"]}) | COLON
    ops = [PaintOp("pancreas", shape, [(0.0, clefts)], replace=FAT | separates,
                   halo=(rng.uniform(1.5, 3.0), MAT["fat_visceral"], separates))]
    duct = Tube(pts[2:], np.full(len(pts) - 2, rng.uniform(0.9, 1.6)), metric=metric, step=4)
    ops.append(PaintOp("pancreatic duct", duct, [(0.0, MAT["pancreatic_duct"])],
                       replace=frozenset({MAT["pancreas"], MAT["pancreas_fat"], MAT["pancreas_fat_lobule"]})))
    landmarks = {"pancreas_uncinate": pts[1].tolist(), "pancreas_head": pts[3].tolist(),
                 "pancreas_neck": pts[5].tolist(), "pancreas_tail": pts[-1].tolist()}
    return ops, tube, shape, target, landmarks


def calibrate_volume(tube: Tube, waves: Waves, amplitude: float, target_ml: float) -> Tube:
    """Scale the tube's radii so the lobulated gland holds about `target_ml` (1.5 mm test grid)."""
    for _ in range(3):
        volume = shape_volume_ml(Lobulated(tube, waves, amplitude), 1.5)
        factor = math.sqrt(target_ml / max(volume, 1e-3))
        if abs(factor - 1.0) < 0.01:
            break
        tube = tube.scaled(factor)
    return tube


def duodenum(p: Patient, head: np.ndarray, head_radius: float) -> tuple[list[PaintOp], Tube]:
    """Bulb -> descending (D2, hugging the head) -> horizontal (D3, between SMA and aorta) -> D4.

    The C-loop is placed from the actual pancreatic head so that D2 always abuts it, as the
    head sits in the duodenal concavity (the two share the pancreaticoduodenal arcades).
    """
    rng = p.rng
    radii = np.array([13, 13, 12, 12, 12, 11, 9.5, 9, 9.5, 10, 10]) * rng.uniform(0.85, 1.1)
    lateral = head[0] - (head_radius + radii[3] - rng.uniform(1.0, 4.0))  # D2 centre-line x
    hx, hy, hz = head
    c_loop = [(lateral + 6, hy - 12, hz + 20), (lateral, hy + 10, hz + 5), (lateral + 1, hy + 14, hz - 18),
              (lateral + 10, hy + 12, hz - 40)]
    pts = np.vstack([p.path([(-14, -76, 24), (-38, -70, 24)], 2.5, retro=False),
                     np.array(c_loop) + rng.normal(0, 1.0, (4, 3)),
                     p.path([(-30, -44, -52), (0, -50, -55), (24, -46, -48), (34, -44, -32), (36, -48, -14)], 2.5)])
    tube = Tube(pts, radii, metric=(1.0, 1.15, 1.0), step=5)
    wall = rng.uniform(2.0, 3.2)
    collapsed = rng.random() < 0.3  # an empty duodenum is all wall: pancreas-like soft tissue
    air = None if collapsed or rng.random() < 0.5 else float(pts[:3, 1].min() + rng.uniform(2, 10))
    layers: list = [(0.0, MAT["duodenum_wall"])]
    if collapsed:
        tube = tube.scaled(0.65)
    else:
        layers.append((wall, bowel_fill(rng, "fluid", air, MAT["duodenum_fluid"], MAT["duodenum_air"])))
    gland = {MAT["pancreas"], MAT["pancreas_fat"], MAT["pancreas_fat_lobule"]}
    op = PaintOp("duodenum", tube, layers, replace=FAT | COLON | {MAT["liver"]} | gland,
                 halo=(2.0, MAT["fat_visceral"], COLON | {MAT["liver"]}))
    return [op], tube


def stomach(p: Patient, keep_clear: Sequence[Shape], collapse: float = 1.0) -> tuple[list[PaintOp], Tube]:
    """J-shaped: fundus under the left diaphragm, body anterior to the pancreas, antrum to pylorus.

    `collapse` < 1 shrinks the lumen of an empty stomach (no oral filling before the scan).
    """
    rng = p.rng
    fill_scale = rng.uniform(0.75, 1.1) * collapse  # distension
    pts = p.path([(55, 5, 100), (72, -25, 78), (62, -60, 55), (38, -80, 38), (10, -86, 28), (-12, -78, 24)],
                 5.0, retro=False)
    radii = np.array([30, 36, 32, 24, 18, 11]) * fill_scale
    pts[:-1] = push_clear(pts[:-1], radii[:-1] + 3.0, keep_clear, 2.0, (0, -1, 0.3))  # the pylorus meets D1
    tube = Tube(pts, radii, step=8)
    shape = Lobulated(tube, Waves(rng, 25.0, 8), 3.0)
    air = float(pts[:, 1].min() - radii.max() * rng.uniform(0.2, 0.9)) if rng.random() < 0.85 else -1e4
    fill = _stomach_fill(rng, air, food=rng.random() < 0.35)
    separates = frozenset({MAT["liver"], MAT["spleen"]}) | COLON
    op = PaintOp("stomach", shape, [(0.0, MAT["stomach_wall"]), (rng.uniform(3.0, 5.5), fill)],
                 replace=FAT | separates, halo=(2.0, MAT["fat_visceral"], separates))
    return [op], tube


def gallbladder(p: Patient, keep_clear: Sequence[Shape]) -> list[PaintOp]:
    """A pear in the gallbladder fossa under the liver, lateral/anterior to the duodenum."""
    if p.rng.random() < 0.1:  # cholecystectomy
        return []
    frame = rotation_frame((0.2, -0.5, 1.0), (1, 0, 0))
    radii = np.array([p.rng.uniform(25, 40), 13, 15])
    centre = push_clear(p.jitter((-64, -82, 10), 6)[None], [15.0], keep_clear, 3.0, (-0.6, -1, 0))[0]
    gb = Ellipsoid(centre, radii, frame)
    return [PaintOp("gallbladder", gb, [(0.0, MAT["gallbladder_wall"]), (p.rng.uniform(1.5, 2.5), MAT["bile"])],
                    replace=FAT | COLON | {MAT["liver"]})]
