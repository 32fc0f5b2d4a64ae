"""Procedural abdominal anatomy for the synthetic CT phantom (`phantom.py` renders and writes it).

The anatomy lives in a *patient frame* in millimetres, LPS like SimpleITK: x to the patient's
Left, y to Posterior, z to Superior. Its origin is the centre of the first lumbar vertebral body
(L1), which sits at the level of the pancreatic neck and body in most adults, so every organ is
placed by its usual relation to the spine, the great vessels and its neighbours.

Every structure is a smooth implicit shape with an (approximate) signed distance in mm:
ellipsoids, superelliptic cross-sections, and tubes swept along Catmull-Rom centre-lines with a
varying radius (pancreas, bowel, stomach, vessels, ribs). Shapes are painted in anatomical
order into a material volume (`uint8`, one id per tissue), each only inside its own bounding box
and only over the materials it may displace (bowel fills fat, it never cuts the liver), which
keeps a case fast and the organs in contact the way they are in a real abdomen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Optional, Sequence, Union

import numpy as np

# ----------------------------------------------------------------------------------- materials


@dataclass(frozen=True)
class Material:
    """A tissue: its organ label name (None = unlabelled) and portal-venous-phase HU.

    `hu` is the range the per-case mean is drawn from; `texture` the standard deviation of the
    correlated parenchymal texture (HU). `enhancing` tissues share one per-case contrast-timing
    draw, so a late scan makes the pancreas, liver, bowel wall and vessels brighter together,
    as in real scans, instead of separating them by chance.
    """

    name: str
    organ: Optional[str]
    hu: tuple[float, float]
    texture: float
    enhancing: bool = False


MATERIALS: tuple[Material, ...] = (
    Material("air", None, (-1000, -1000), 0),
    Material("skin", None, (20, 50), 8),
    Material("fat_subcutaneous", None, (-115, -95), 10),
    Material("fat_visceral", None, (-110, -85), 12),  # stranding and small vessels raise it a bit
    Material("muscle", None, (45, 62), 8),
    Material("bone_cortex", "vertebrae", (700, 1100), 60),
    Material("bone_marrow", "vertebrae", (170, 280), 35),
    Material("rib_cortex", "ribs", (650, 1000), 60),
    Material("rib_marrow", "ribs", (180, 300), 35),
    Material("cartilage", None, (90, 180), 15),
    Material("disc", None, (70, 100), 10),
    Material("spinal_canal", None, (10, 35), 6),
    Material("lung", "lungs", (-880, -820), 25),
    Material("liver", "liver", (95, 125), 8, True),
    Material("spleen", "spleen", (105, 130), 8, True),
    Material("kidney_cortex_r", "kidney_right", (150, 190), 10, True),
    Material("kidney_medulla_r", "kidney_right", (100, 135), 10, True),
    Material("kidney_cortex_l", "kidney_left", (150, 190), 10, True),
    Material("kidney_medulla_l", "kidney_left", (100, 135), 10, True),
    Material("renal_sinus_fat", None, (-90, -50), 15),
    Material("urine", None, (0, 20), 4),
    Material("gallbladder_wall", "gallbladder", (50, 80), 6, True),
    Material("bile", "gallbladder", (0, 20), 3),
    Material("pancreas", "pancreas", (85, 115), 10, True),
    # Fat between the lobules is inside the organ outline (annotators include it), but on CT
    # each such voxel is a fat/parenchyma mixture: it drags part of the pancreas towards fat.
    Material("pancreas_fat", "pancreas", (-60, -10), 15),
    Material("pancreatic_duct", "pancreas", (5, 25), 4),
    Material("stomach_wall", "stomach", (80, 115), 8, True),
    Material("stomach_fluid", "stomach", (5, 25), 4),
    Material("stomach_food", "stomach", (20, 60), 25),
    Material("stomach_air", "stomach", (-1000, -980), 0),
    Material("duodenum_wall", "duodenum", (85, 120), 8, True),
    Material("duodenum_fluid", "duodenum", (5, 30), 5),
    Material("duodenum_air", "duodenum", (-1000, -980), 0),
    Material("bowel_wall", "small_bowel", (85, 125), 8, True),
    Material("bowel_fluid", "small_bowel", (0, 25), 5),
    Material("bowel_contrast", "small_bowel", (180, 350), 25),
    Material("bowel_air", "small_bowel", (-1000, -980), 0),
    Material("colon_wall", "colon", (60, 95), 8, True),
    Material("stool", "colon", (-80, 40), 30),
    Material("colon_air", "colon", (-1000, -980), 0),
    Material("aorta", "aorta", (140, 200), 8, True),
    Material("ivc", "inferior_vena_cava", (120, 175), 10, True),
    Material("portal_vein", "portal_splenic_vein", (150, 200), 8, True),
    Material("artery", "visceral_arteries", (140, 200), 8, True),
    Material("renal_vein", "renal_veins", (140, 190), 8, True),
    Material("mesenteric_vessel", None, (110, 170), 8, True),
    Material("lymph_node", None, (40, 70), 6, True),
    Material("couch_shell", None, (150, 350), 10),
    Material("couch_foam", None, (-950, -850), 5),
)
MAT: dict[str, int] = {m.name: i for i, m in enumerate(MATERIALS)}

# Label values written with `all_organs=True`; pancreas is always 1.
ORGAN_LABELS: dict[str, int] = {
    "pancreas": 1, "liver": 2, "spleen": 3, "kidney_right": 4, "kidney_left": 5, "stomach": 6,
    "duodenum": 7, "small_bowel": 8, "colon": 9, "gallbladder": 10, "aorta": 11,
    "inferior_vena_cava": 12, "portal_splenic_vein": 13, "visceral_arteries": 14,
    "renal_veins": 15, "vertebrae": 16, "ribs": 17, "lungs": 18,
}

FAT = frozenset({MAT["fat_visceral"]})
SOFT = frozenset({MAT["fat_visceral"], MAT["muscle"]})
# The colon is painted before the upper abdominal organs; they may displace it.
COLON = frozenset({MAT["colon_wall"], MAT["stool"], MAT["colon_air"]})

# ---------------------------------------------------------------------------------------- grid


Box = tuple[slice, slice, slice]  # (z, y, x) index ranges


@dataclass
class Grid:
    """A voxel grid placed in the patient frame (the geometry of a SimpleITK image).

    `spacing`/`size` are in index order (x, y, z) like SimpleITK; `direction` has the unit vector
    of index axis a in column a; `origin` is the patient-frame position of voxel (0, 0, 0).
    """

    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    size: tuple[int, int, int]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return (self.size[2], self.size[1], self.size[0])

    def index_box(self, lo: np.ndarray, hi: np.ndarray) -> Optional[Box]:
        """Index ranges of the voxels that can lie inside the physical box [lo, hi], or None."""
        corners = np.array([[(lo, hi)[(c >> a) & 1][a] for a in range(3)] for c in range(8)], float)
        index = (corners - self.origin) @ self.direction / self.spacing  # rows: continuous (i, j, k)
        first = np.maximum(np.floor(index.min(axis=0)).astype(int), 0)
        last = np.minimum(np.ceil(index.max(axis=0)).astype(int) + 1, np.array(self.size))
        if np.any(last <= first):
            return None
        return (slice(first[2], last[2]), slice(first[1], last[1]), slice(first[0], last[0]))

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient-frame X, Y, Z of the voxels of `box` as broadcastable float32 arrays.

        On an axis-aligned grid X varies along x only, so it stays (1, 1, nx): the shapes'
        arithmetic then broadcasts and costs a fraction of a full 3-D evaluation.
        """
        steps = []
        for axis, sl in zip((0, 1, 2), (box[2], box[1], box[0])):
            shape = [1, 1, 1]
            shape[2 - axis] = sl.stop - sl.start
            steps.append((np.arange(sl.start, sl.stop, dtype=np.float64) * self.spacing[axis]).reshape(shape))
        out = []
        for row in range(3):
            value: Union[float, np.ndarray] = float(self.origin[row])
            for axis in range(3):
                weight = self.direction[row, axis]
                if abs(weight) > 1e-9:
                    value = value + weight * steps[axis]
            out.append(np.asarray(value, dtype=np.float32).reshape((1, 1, 1)) if np.ndim(value) == 0
                       else np.asarray(value, dtype=np.float32))
        return out[0], out[1], out[2]


def box_shape(box: Box) -> tuple[int, int, int]:
    return tuple(s.stop - s.start for s in box)  # type: ignore[return-value]


def intersect_boxes(outer: Box, inner: Box) -> Optional[tuple[Box, Box]]:
    """The part of `inner` inside `outer`: (absolute box, the same box relative to `outer`)."""
    absolute, relative = [], []
    for o, i in zip(outer, inner):
        start, stop = max(o.start, i.start), min(o.stop, i.stop)
        if stop <= start:
            return None
        absolute.append(slice(start, stop))
        relative.append(slice(start - o.start, stop - o.start))
    return tuple(absolute), tuple(relative)  # type: ignore[return-value]


# -------------------------------------------------------------------------------------- shapes

BIG = np.float32(1e4)


class Shape:
    """An implicit solid: `sdf` < 0 inside, roughly the distance to the surface in mm."""

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sdf(self, x, y, z) -> np.ndarray:
        """Signed distance at broadcastable coordinate arrays (or flat point arrays)."""
        raise NotImplementedError

    def sdf_box(self, grid: Grid, box: Box) -> np.ndarray:
        """Signed distance on the voxels of `box` (broadcastable to its shape)."""
        return self.sdf(*grid.coords(box))


def _rotation(axis_a: Sequence[float], axis_b: Sequence[float]) -> np.ndarray:
    """Orthonormal frame whose first axis is `axis_a` and second is `axis_b` made orthogonal."""
    a = np.asarray(axis_a, float)
    a /= np.linalg.norm(a)
    b = np.asarray(axis_b, float) - a * np.dot(a, axis_b)
    b /= np.linalg.norm(b)
    return np.stack([a, b, np.cross(a, b)], axis=1)


class Ellipsoid(Shape):
    """Ellipsoid; `frame` columns are its local axes (None = patient axes)."""

    def __init__(self, centre, radii, frame: Optional[np.ndarray] = None):
        self.centre = np.asarray(centre, float)
        self.radii = np.asarray(radii, float)
        self.frame = None if frame is None else np.asarray(frame, float)

    def aabb(self):
        if self.frame is None:
            reach = self.radii
        else:  # extent of a rotated ellipsoid along each patient axis
            reach = np.sqrt(((self.frame * self.radii) ** 2).sum(axis=1))
        return self.centre - reach, self.centre + reach

    def sdf(self, x, y, z):
        d = (x - np.float32(self.centre[0]), y - np.float32(self.centre[1]), z - np.float32(self.centre[2]))
        if self.frame is None:
            u = d
        else:
            f = self.frame.astype(np.float32)
            u = tuple(d[0] * f[0, a] + d[1] * f[1, a] + d[2] * f[2, a] for a in range(3))
        r = self.radii.astype(np.float32)
        k0 = np.sqrt((u[0] / r[0]) ** 2 + (u[1] / r[1]) ** 2 + (u[2] / r[2]) ** 2)
        k1 = np.sqrt((u[0] / r[0] ** 2) ** 2 + (u[1] / r[1] ** 2) ** 2 + (u[2] / r[2] ** 2) ** 2)
        # First-order distance estimate (Quilez): exact on the surface, monotone inside and out.
        return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))


class Section(Shape):
    """A prism along z with a superelliptic cross-section: the body wall layers.

    The anterior and posterior halves have their own semi-axis and exponent: a belly is round,
    a back lying on the table is flat.
    """

    def __init__(self, centre_xy, half_width: float, anterior: float, posterior: float,
                 n_anterior: float = 2.2, n_posterior: float = 3.0, z_range=(-1e4, 1e4),
                 z_scale: tuple[float, float] = (0.0, 0.0)):
        self.cx, self.cy = float(centre_xy[0]), float(centre_xy[1])
        self.a, self.b_ant, self.b_post = half_width, anterior, posterior
        self.n_ant, self.n_post = n_anterior, n_posterior
        self.z_range = z_range
        self.z_scale = z_scale

    def scale_at(self, z):
        """Size factor of the cross-section at height z: the waist and the flaring lower ribs."""
        t = z * np.float32(0.01)
        return 1.0 + np.float32(self.z_scale[0]) * t + np.float32(self.z_scale[1]) * t * t

    def aabb(self):
        grow = 1.5 if any(self.z_scale) else 1.0
        return (np.array([self.cx - self.a * grow, self.cy - self.b_ant * grow, self.z_range[0]]),
                np.array([self.cx + self.a * grow, self.cy + self.b_post * grow, self.z_range[1]]))

    def q(self, x, y):
        dy = y - np.float32(self.cy)
        back = dy > 0
        b = np.where(back, np.float32(self.b_post), np.float32(self.b_ant))
        n = np.where(back, np.float32(self.n_post), np.float32(self.n_ant))
        t = np.abs(x - np.float32(self.cx)) / np.float32(self.a)
        s = np.abs(dy) / b
        return (t ** n + s ** n) ** (1.0 / n), b

    def sdf(self, x, y, z):
        q, b = self.q(x, y)
        # The superelliptic norm is homogeneous, so scaling the outline with z only changes the
        # level compared against: a 2-D norm minus a per-slice factor, cheap on any grid.
        level = self.scale_at(z) if any(self.z_scale) else 1.0
        d = (q - level) * np.minimum(b, np.float32(self.a))
        if self.z_range[0] > -1e3 or self.z_range[1] < 1e3:
            d = np.maximum(d, np.maximum(np.float32(self.z_range[0]) - z, z - np.float32(self.z_range[1])))
        return d

    def boundary_point(self, angle: float, outward: float = 0.0) -> np.ndarray:
        """The (x, y) point of the outline at `angle` (0 = posterior, pi/2 = left), pushed out."""
        ux, uy = math.sin(angle), math.cos(angle)
        b = self.b_post if uy > 0 else self.b_ant
        n = self.n_post if uy > 0 else self.n_ant
        t = 1.0 / ((abs(ux) / self.a) ** n + (abs(uy) / b) ** n) ** (1.0 / n)
        return np.array([self.cx + (t + outward) * ux, self.cy + (t + outward) * uy])


class EllipticCylinder(Shape):
    """A short cylinder along z with an elliptic cross-section (vertebral bodies, discs)."""

    def __init__(self, centre, radius_x: float, radius_y: float, half_height: float):
        self.centre = np.asarray(centre, float)
        self.rx, self.ry, self.hh = radius_x, radius_y, half_height

    def aabb(self):
        reach = np.array([self.rx, self.ry, self.hh])
        return self.centre - reach, self.centre + reach

    def sdf(self, x, y, z):
        c = self.centre.astype(np.float32)
        q = np.sqrt(((x - c[0]) / np.float32(self.rx)) ** 2 + ((y - c[1]) / np.float32(self.ry)) ** 2)
        radial = (q - 1.0) * np.float32(min(self.rx, self.ry))
        return np.maximum(radial, np.abs(z - c[2]) - np.float32(self.hh))


class HalfSpace(Shape):
    """Points with n . p > offset are outside (used to cut the liver's inferior surface)."""

    def __init__(self, normal, offset: float):
        n = np.asarray(normal, float)
        self.normal = n / np.linalg.norm(n)
        self.offset = offset

    def aabb(self):
        return np.full(3, -1e4), np.full(3, 1e4)

    def sdf(self, x, y, z):
        n = self.normal.astype(np.float32)
        return x * n[0] + y * n[1] + z * n[2] - np.float32(self.offset)


def catmull_rom(points: np.ndarray, radii: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample a Catmull-Rom spline through `points` every ~`step` mm; radii interpolate linearly."""
    p = np.asarray(points, float)
    r = np.asarray(radii, float)
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out_p, out_r = [], []
    for i in range(len(p) - 1):
        p0, p1, p2, p3 = padded[i:i + 4]
        count = max(1, int(math.ceil(np.linalg.norm(p2 - p1) / step)))
        t = (np.arange(count) / count)[:, None]
        t2, t3 = t * t, t * t * t
        out_p.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                            + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
        out_r.append(r[i] + (r[i + 1] - r[i]) * t[:, 0])
    out_p.append(p[-1:])
    out_r.append(r[-1:])
    return np.vstack(out_p), np.concatenate(out_r)


class Tube(Shape):
    """A tube swept along a spline centre-line: a chain of cone-capped capsules.

    `metric` weights the axes when measuring distance: (1, 1.25, 0.85) gives a cross-section
    thinner front-to-back and taller head-to-foot, like the body of the pancreas.
    """

    def __init__(self, points, radii, metric=(1.0, 1.0, 1.0), step: float = 5.0):
        self.centre, self.radius = catmull_rom(np.asarray(points, float), np.asarray(radii, float), step)
        self.metric = np.asarray(metric, float)
        self._prepare()

    def _prepare(self) -> None:
        scaled = self.centre * self.metric
        self.a, self.b = scaled[:-1], scaled[1:]
        self.ra, self.rb = self.radius[:-1], self.radius[1:]
        r = np.maximum(self.ra, self.rb)[:, None] / self.metric
        self.seg_lo = np.minimum(self.centre[:-1], self.centre[1:]) - r
        self.seg_hi = np.maximum(self.centre[:-1], self.centre[1:]) + r

    def scaled(self, factor: float) -> "Tube":
        """The same centre-line with every radius multiplied by `factor`."""
        other = object.__new__(Tube)
        other.centre, other.radius, other.metric = self.centre, self.radius * factor, self.metric
        other._prepare()
        return other

    def aabb(self):
        return self.seg_lo.min(axis=0), self.seg_hi.max(axis=0)

    def _segment(self, i: int, x, y, z):
        w = self.metric.astype(np.float32)
        a, d = self.a[i].astype(np.float32), (self.b[i] - self.a[i]).astype(np.float32)
        px, py, pz = x * w[0] - a[0], y * w[1] - a[1], z * w[2] - a[2]
        length2 = max(float(np.dot(d, d)), 1e-9)
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) * np.float32(1.0 / length2), 0.0, 1.0)
        qx, qy, qz = px - t * d[0], py - t * d[1], pz - t * d[2]
        radius = np.float32(self.ra[i]) + t * np.float32(self.rb[i] - self.ra[i])
        return np.sqrt(qx * qx + qy * qy + qz * qz) - radius

    def sdf(self, x, y, z):
        out = None
        for i in range(len(self.a)):
            d = self._segment(i, x, y, z)
            out = d if out is None else np.minimum(out, d)
        return out

    def sdf_box(self, grid, box):
        out = np.full(box_shape(box), BIG, np.float32)
        for i in range(len(self.a)):
            sub = grid.index_box(self.seg_lo[i], self.seg_hi[i])
            if sub is None:
                continue
            both = intersect_boxes(box, sub)
            if both is None:
                continue
            absolute, relative = both
            np.minimum(out[relative], self._segment(i, *grid.coords(absolute)), out=out[relative])
        return out


class Waves:
    """Band-limited 3-D noise of unit variance: a sum of random plane waves.

    Analytic in patient coordinates, so it costs nothing outside the voxels that ask for it and
    is identical whatever grid or orientation the case is rendered on.
    """

    def __init__(self, rng: np.random.Generator, wavelength: float, count: int = 10):
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = wavelength * rng.uniform(0.7, 1.4, count)
        self.k = (directions * (2 * math.pi / lengths)[:, None]).astype(np.float32)
        self.phase = rng.uniform(0, 2 * math.pi, count).astype(np.float32)
        self.scale = np.float32(math.sqrt(2.0 / count))

    def __call__(self, x, y, z) -> np.ndarray:
        total = None
        for k, phase in zip(self.k, self.phase):
            term = np.cos(x * k[0] + y * k[1] + z * k[2] + phase)
            total = term if total is None else total + term
        return total * self.scale


class Lobulated(Shape):
    """A shape whose surface is pushed in and out by `amplitude` mm of smooth noise."""

    def __init__(self, base: Shape, waves: Waves, amplitude: float):
        self.base, self.waves, self.amplitude = base, waves, amplitude

    def aabb(self):
        lo, hi = self.base.aabb()
        return lo - 2.5 * self.amplitude, hi + 2.5 * self.amplitude

    def _perturb(self, d, x, y, z):
        d = np.array(np.broadcast_to(d, np.broadcast_shapes(np.shape(d), np.shape(x), np.shape(y), np.shape(z))))
        band = np.abs(d) < 2.5 * self.amplitude  # only near the surface can the noise matter
        if band.any():
            full = [np.broadcast_to(c, d.shape)[band] for c in (x, y, z)]
            d[band] += np.float32(self.amplitude) * self.waves(*full)
        return d

    def sdf(self, x, y, z):
        return self._perturb(self.base.sdf(x, y, z), x, y, z)

    def sdf_box(self, grid, box):
        return self._perturb(self.base.sdf_box(grid, box), *grid.coords(box))


class ShapeUnion(Shape):
    """Several shapes painted as one (minimum of their distances)."""

    def __init__(self, *parts: Shape):
        self.parts = parts

    def aabb(self):
        boxes = [p.aabb() for p in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def sdf(self, x, y, z):
        return _reduce(np.minimum, [p.sdf(x, y, z) for p in self.parts])

    def sdf_box(self, grid, box):
        return _reduce(np.minimum, [_part_on_box(p, grid, box, BIG) for p in self.parts])


class Cut(Shape):
    """`base` minus every shape in `holes` (each widened by `margin` mm)."""

    def __init__(self, base: Shape, holes: Sequence[Shape], margin: float = 0.0, bounded: bool = True):
        self.base, self.holes, self.margin = base, tuple(holes), margin
        self.bounded = bounded

    def aabb(self):
        return self.base.aabb()

    def sdf(self, x, y, z):
        d = self.base.sdf(x, y, z)
        for hole in self.holes:
            d = np.maximum(d, np.float32(self.margin) - hole.sdf(x, y, z))
        return d

    def sdf_box(self, grid, box):
        d = self.base.sdf_box(grid, box)
        for hole in self.holes:
            d = np.maximum(d, np.float32(self.margin) - _part_on_box(hole, grid, box, BIG, self.margin))
        return d


def _reduce(op, arrays):
    out = arrays[0]
    for a in arrays[1:]:
        out = op(out, a)
    return out


def _part_on_box(shape: Shape, grid: Grid, box: Box, fill: np.float32, margin: float = 0.0) -> np.ndarray:
    """`shape.sdf_box` on `box`, evaluated only where the shape's own box overlaps it."""
    if isinstance(shape, HalfSpace):
        return np.broadcast_to(shape.sdf_box(grid, box), box_shape(box))
    lo, hi = shape.aabb()
    sub = grid.index_box(lo - margin, hi + margin)
    both = None if sub is None else intersect_boxes(box, sub)
    out = np.full(box_shape(box), fill, np.float32)
    if both is not None:
        absolute, relative = both
        out[relative] = shape.sdf_box(grid, absolute)
    return out


# ------------------------------------------------------------------------------------ painting

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


# ------------------------------------------------------------------------------------- patient


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


def _bowel_fill(rng: np.random.Generator, kind: str, air_level: Optional[float],
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


# --------------------------------------------------------------------------- anatomy builders


def _body(p: Patient) -> tuple[list[PaintOp], Section, Section]:
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


def _spine(p: Patient) -> tuple[list[PaintOp], dict]:
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


def _ribs(p: Patient, cavity: Section, pitch: float = 34.0) -> list[PaintOp]:
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


def _kidneys(p: Patient) -> tuple[list[PaintOp], dict[str, Shape]]:
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
        frame = _rotation(long_axis, (side * math.cos(0.5), -math.sin(0.5), 0))  # 2nd axis: lateral-anterior
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


def _liver(p: Patient) -> tuple[list[PaintOp], Shape]:
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
    liver = Lobulated(_Intersect(ShapeUnion(right, left, caudate), cut), Waves(rng, 60.0, 6), 4.0)
    return [PaintOp("liver", liver, [(0.0, MAT["liver"])], replace=FAT)], liver


class _Intersect(Shape):
    """The part of `a` inside `b` (maximum of the distances)."""

    def __init__(self, a: Shape, b: Shape):
        self.a, self.b = a, b

    def aabb(self):
        return self.a.aabb()

    def sdf(self, x, y, z):
        return np.maximum(self.a.sdf(x, y, z), self.b.sdf(x, y, z))

    def sdf_box(self, grid, box):
        return np.maximum(self.a.sdf_box(grid, box), np.broadcast_to(self.b.sdf_box(grid, box), box_shape(box)))


def _spleen(p: Patient) -> tuple[list[PaintOp], Shape, np.ndarray]:
    """A crescent along the posterolateral ribs; its concave hilum faces antero-medially."""
    rng = p.rng
    centre = p.jitter((98 * p.scale, 38 + p.spine_y, 52), 5)
    frame = _rotation((0.55, -1.0, 0.15), (1.0, 0.55, 0.0))
    radii = np.array([rng.uniform(45, 58), rng.uniform(18, 26), rng.uniform(42, 55)]) * p.scale
    body = Ellipsoid(centre, radii, frame)
    hilum = centre - frame[:, 1] * radii[1] * 1.9
    notch = Ellipsoid(hilum, radii * np.array([0.8, 1.3, 0.7]), frame)  # the concave visceral surface
    spleen = Lobulated(Cut(body, [notch]), Waves(rng, 35.0, 6), 2.5)
    op = PaintOp("spleen", spleen, [(0.0, MAT["spleen"])], replace=FAT)
    return [op], spleen, centre - frame[:, 1] * radii[1] * 0.9


def _pancreas(p: Patient) -> tuple[list[PaintOp], Tube, Shape, float, dict]:
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

    def clefts(x, y, z, d):
        # Interlobular fat: thin septa along the zero sheets of band-limited noise, which carve
        # the gland into lobules; they widen near the surface where the lobules fray.
        width = half_width * (1.0 + 0.5 * np.clip(1.0 + d / 4.0, 0, 1))
        return np.where(np.abs(cleft_waves(x, y, z)) < width, MAT["pancreas_fat"], MAT["pancreas"]).astype(np.uint8)

    separates = frozenset({MAT["liver"], MAT["spleen"], MAT["stomach_wall"]}) | COLON
    ops = [PaintOp("pancreas", shape, [(0.0, clefts)], replace=FAT | separates,
                   halo=(rng.uniform(1.5, 3.0), MAT["fat_visceral"], separates))]
    duct = Tube(pts[2:], np.full(len(pts) - 2, rng.uniform(0.9, 1.6)), metric=metric, step=4)
    ops.append(PaintOp("pancreatic duct", duct, [(0.0, MAT["pancreatic_duct"])],
                       replace=frozenset({MAT["pancreas"], MAT["pancreas_fat"]})))
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


def shape_volume_ml(shape: Shape, step: float) -> float:
    lo, hi = shape.aabb()
    size = np.ceil((hi - lo) / step).astype(int) + 1
    grid = Grid(lo, np.full(3, step), np.eye(3), tuple(int(v) for v in size))
    box = (slice(0, size[2]), slice(0, size[1]), slice(0, size[0]))
    inside = np.broadcast_to(shape.sdf_box(grid, box), box_shape(box)) < 0
    return float(inside.sum()) * step ** 3 / 1000.0


def _duodenum(p: Patient, head: np.ndarray, head_radius: float) -> tuple[list[PaintOp], Tube]:
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
        layers.append((wall, _bowel_fill(rng, "fluid", air, MAT["duodenum_fluid"], MAT["duodenum_air"])))
    op = PaintOp("duodenum", tube, layers, replace=FAT | COLON | {MAT["liver"], MAT["pancreas"], MAT["pancreas_fat"]},
                 halo=(2.0, MAT["fat_visceral"], COLON | {MAT["liver"]}))
    return [op], tube


def push_clear(points: np.ndarray, radii: np.ndarray, obstacles: Sequence[Shape], gap: float,
               direction: Sequence[float], rounds: int = 6) -> np.ndarray:
    """Move each control point along `direction` until its tube clears every obstacle by `gap`.

    Organs are drawn independently, so a distended stomach could land on the pancreas; real
    viscera slide away from each other (the lesser sac keeps the stomach in front of the gland).
    """
    moved = np.array(points, float)
    step = np.asarray(direction, float) / np.linalg.norm(direction)
    for i in range(len(moved)):
        for _ in range(rounds):
            x, y, z = (np.array([c]) for c in moved[i])
            clearance = min(float(np.min(o.sdf(x, y, z))) for o in obstacles)
            deficit = radii[i] + gap - clearance
            if deficit <= 0:
                break
            moved[i] += step * (deficit + 1.0)
    return moved


def _stomach(p: Patient, keep_clear: Sequence[Shape]) -> tuple[list[PaintOp], Tube]:
    """J-shaped: fundus under the left diaphragm, body anterior to the pancreas, antrum to pylorus."""
    rng = p.rng
    fill_scale = rng.uniform(0.75, 1.1)  # distension
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


def _gallbladder(p: Patient, keep_clear: Sequence[Shape]) -> list[PaintOp]:
    """A pear in the gallbladder fossa under the liver, lateral/anterior to the duodenum."""
    if p.rng.random() < 0.1:  # cholecystectomy
        return []
    frame = _rotation((0.2, -0.5, 1.0), (1, 0, 0))
    radii = np.array([p.rng.uniform(25, 40), 13, 15])
    centre = push_clear(p.jitter((-64, -82, 10), 6)[None], [15.0], keep_clear, 3.0, (-0.6, -1, 0))[0]
    gb = Ellipsoid(centre, radii, frame)
    return [PaintOp("gallbladder", gb, [(0.0, MAT["gallbladder_wall"]), (p.rng.uniform(1.5, 2.5), MAT["bile"])],
                    replace=FAT | COLON | {MAT["liver"]})]


def _along_surface(tube: Tube, start: int, stop: int, every: float, dy: float, dz: float,
                   rng: np.random.Generator, wobble: float = 0.0) -> np.ndarray:
    """Points following the gland from sample `start` to `stop`, offset to its surface.

    `dy`/`dz` are in units of the local half-thickness (1 = on the surface): (1, 0) runs along
    the posterior surface, (0.2, 1) along the upper border.
    """
    step = max(1, int(round(every / max(np.linalg.norm(np.diff(tube.centre, axis=0), axis=1).mean(), 1e-3))))
    index = list(range(start, stop, step if stop > start else -step)) + [stop]
    half_y = tube.radius[index] / tube.metric[1]
    half_z = tube.radius[index] / tube.metric[2]
    offset = np.stack([np.zeros(len(index)), dy * half_y, dz * half_z], axis=1)
    return tube.centre[index] + offset + rng.normal(0, wobble, (len(index), 3))


ENHANCED_SOFT = SOFT | {MAT["pancreas"], MAT["pancreas_fat"], MAT["pancreatic_duct"], MAT["liver"]}
ARTERY = ((0.0, MAT["artery"]),)
PORTAL = ((0.0, MAT["portal_vein"]),)


def _aorta_and_caval_veins(p: Patient) -> tuple[list[PaintOp], Tube, Tube]:
    """Aorta left-anterior of the spine; the flattened IVC to its right, intrahepatic above,
    where the three hepatic veins drain into it."""
    rng, y0 = p.rng, p.spine_y
    r_ao = rng.uniform(9.5, 13.0)
    aorta = Tube([(8, -24 + y0, 200), (11, -27 + y0, 60), (12, -28 + y0, -40), (14, -26 + y0, -200)],
                 [r_ao + 1.5, r_ao, r_ao - 0.5, r_ao - 1.5], step=20)
    ivc = Tube([(-24, -24 + y0, -200), (-25, -25 + y0, -20), (-26, -22 + y0, 50), (-20, -10 + y0, 95),
                (-12, -2 + y0, 140)], [11, 12, 13, 13, 13], metric=(0.9, 1.35, 1), step=10)
    ops = [PaintOp("aorta", aorta, [(0.0, MAT["aorta"])], replace=ENHANCED_SOFT),
           PaintOp("ivc", ivc, [(0.0, MAT["ivc"])], replace=ENHANCED_SOFT)]
    hv = p.jitter((-18, -8 + y0, 100), 2)
    for target in [(-110, -10, 80), (-55, -75, 75), (25, -60, 95)]:
        t = p.jitter(target, 6)
        ops.append(PaintOp("hepatic vein", Tube([t, (t + hv) / 2 + rng.normal(0, 4, 3), hv], [2.5, 4.5, 6.0], step=6),
                           [(0.0, MAT["ivc"])], replace=frozenset({MAT["liver"]})))
    return ops, aorta, ivc


def _portal_system(p: Patient, pancreas: Tube, neck: int, uncinate: int, spleen_hilum: np.ndarray):
    """SMV + splenic vein -> portal vein, all placed from the gland.

    The confluence lies behind the neck, the SMV in front of the uncinate process and the
    splenic vein in a groove on the back of the body and tail: the vessels a reader follows
    to find the pancreas, and that partly cut into its label.
    """
    rng = p.rng
    tail = len(pancreas.centre) - 1
    r_pv = rng.uniform(6, 8)
    neck_half_y = pancreas.radius[neck] / pancreas.metric[1]
    confluence = pancreas.centre[neck] + np.array([-2.0, neck_half_y + r_pv - 2.5, -3.0]) + rng.normal(0, 1, 3)
    porta = p.jitter((-42, -38, 42), 4) + p.shift * 0.5
    portal = Tube([confluence, (confluence + porta) / 2 + rng.normal(0, 2, 3), porta], [r_pv, r_pv, r_pv - 0.5], step=5)
    unc = pancreas.centre[uncinate]
    in_front = unc + np.array([6.0, -(pancreas.radius[uncinate] / pancreas.metric[1] + 6.5), 0.0])
    smv = Tube(np.vstack([confluence, in_front + rng.normal(0, 1, 3), p.path([(-13, -66, -50), (-15, -72, -90)], 2.0)]),
               [r_pv - 1, 5.5, 4.5, 4.0], step=5)
    r_sv = rng.uniform(3.8, 5.0)
    groove = _along_surface(pancreas, neck, tail - 2, 14.0, 1.0 + (r_sv - 1.5) / 9.0, 0.2, rng, 1.0)
    splenic = Tube(np.vstack([confluence, groove[1:], spleen_hilum]), [r_sv] * (len(groove) + 1), step=5)
    ops = [PaintOp(name, tube, PORTAL, replace=ENHANCED_SOFT)
           for name, tube in (("portal vein", portal), ("SMV", smv), ("splenic vein", splenic))]
    for branch in [(-85, -20, 60), (-60, -5, 35), (0, -55, 70), (-30, -60, 55)]:  # intrahepatic branches
        end = p.jitter(branch, 6)
        ops.append(PaintOp("portal branch", Tube([porta, (porta + end) / 2 + rng.normal(0, 5, 3), end],
                                                 [5.0, 3.5, 2.0], step=5), PORTAL, replace=frozenset({MAT["liver"]})))
    return ops, smv, confluence, porta


def _visceral_arteries(p: Patient, pancreas: Tube, neck: int, spleen_hilum: np.ndarray, porta: np.ndarray):
    """SMA behind the neck and down into the mesentery; the celiac trunk above it, with the
    hepatic artery to the porta and the tortuous splenic artery along the gland's upper border."""
    rng, y0 = p.rng, p.spine_y
    tail = len(pancreas.centre) - 1
    sma_origin = np.array([12, -38 + y0, 16.0]) + rng.normal(0, [1, 0.5, 4])
    sma = Tube(np.vstack([sma_origin, p.path([(11, -47, 6), (8, -56, -16), (4, -66, -45), (0, -76, -90)], 2.0)]),
               [4.0, 3.8, 3.6, 3.3, 3.0], step=4)
    celiac_origin = sma_origin + np.array([0, 0, rng.uniform(10, 18)])
    celiac_end = p.jitter((12, -52, celiac_origin[2] + 4), 2)
    hepatic = Tube([celiac_end, p.jitter((-20, -60, 34), 3), porta + np.array([5, -8, 3])], [3.2, 3.0, 2.5], step=4)
    border = _along_surface(pancreas, neck + 2, tail - 2, 18.0, 0.4, 1.35, rng, 3.0)
    sa_pts = np.vstack([celiac_end, border, spleen_hilum + np.array([0, 0, 6])])
    splenic_artery = Tube(sa_pts, np.linspace(3.0, 2.4, len(sa_pts)), step=3)
    celiac = Tube([celiac_origin + np.array([0, 4, 0]), celiac_end], [3.6, 3.4], step=4)
    ops = [PaintOp(name, tube, ARTERY, replace=SOFT) for name, tube in
           (("SMA", sma), ("celiac", celiac), ("hepatic artery", hepatic), ("splenic artery", splenic_artery))]
    return ops, sma, sma_origin


def _renal_vessels(p: Patient, kidneys: dict[str, Shape]) -> list[PaintOp]:
    """Renal veins to the IVC (the left one between the SMA in front and the aorta behind)
    and renal arteries from the aorta (the right one behind the IVC)."""
    y0 = p.spine_y
    ops = []
    for tag in ("l", "r"):
        hilum = kidneys[f"hilum_{tag}"].centre
        if tag == "l":
            pts = [hilum, (30, -34 + y0, hilum[2] * 0.3 - 4), (10, -43 + y0, -6), (-22, -32 + y0, -6)]
        else:
            pts = [hilum, (-24, -26 + y0, hilum[2] * 0.5 - 4)]
        into_sinus = SOFT | {MAT["renal_sinus_fat"]}
        ops.append(PaintOp(f"renal vein {tag}", Tube(pts, [5.0] * len(pts), metric=(1, 1.3, 1), step=4),
                           [(0.0, MAT["renal_vein"])], replace=into_sinus))
        origin = (12 * (1 if tag == "l" else 0.4), -22 + y0, 0)
        ops.append(PaintOp(f"renal artery {tag}", Tube([origin, hilum + np.array([0, 6, 6])], [3.0, 2.5], step=4),
                           ARTERY, replace=into_sinus))
    return ops


def _mesenteric_branches(p: Patient, smv: Tube) -> list[PaintOp]:
    """Jejunal/ileal branches fanning into the mesentery: small enhancing dots among the loops."""
    rng = p.rng
    ops = []
    for _ in range(int(rng.integers(4, 8))):
        start = smv.centre[rng.integers(len(smv.centre) // 3, len(smv.centre))]
        direction = rng.normal(0, 1, 3) + np.array([0.6, -0.8, -0.5])
        direction /= np.linalg.norm(direction)
        end = start + direction * rng.uniform(40, 80)
        mid = (start + end) / 2 + rng.normal(0, 6, 3)
        ops.append(PaintOp("mesenteric vessel", Tube([start, mid, end], [2.8, 2.2, 1.5], step=5),
                           [(0.0, MAT["mesenteric_vessel"])], replace=FAT))
    return ops


def _vessels(p: Patient, spleen_hilum: np.ndarray, kidneys: dict[str, Shape], pancreas: Tube,
             landmarks: dict) -> tuple[list[PaintOp], dict]:
    """All vessels; returns the paint operations and the tubes other organs must avoid."""

    def nearest(name: str) -> int:
        return int(np.argmin(np.linalg.norm(pancreas.centre - landmarks[name], axis=1)))

    neck, uncinate = nearest("pancreas_neck"), nearest("pancreas_uncinate")
    ops, aorta, ivc = _aorta_and_caval_veins(p)
    portal_ops, smv, confluence, porta = _portal_system(p, pancreas, neck, uncinate, spleen_hilum)
    artery_ops, sma, sma_origin = _visceral_arteries(p, pancreas, neck, spleen_hilum, porta)
    ops += portal_ops + artery_ops + _renal_vessels(p, kidneys) + _mesenteric_branches(p, smv)
    found = {"confluence": confluence.tolist(), "sma_origin": sma_origin.tolist()}
    return ops, {"aorta": aorta, "ivc": ivc, "smv": smv, "sma": sma, "landmarks": found}


def _colon(p: Patient, keep_clear: Sequence[Shape]) -> tuple[list[PaintOp], list[Tube]]:
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
                                                         _bowel_fill(rng, "stool", air, 0, MAT["colon_air"]))],
                 replace=FAT)
    return [op], [tube]


class _FreeSpace:
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
            self.clearance = np.minimum(self.clearance, _part_on_box(shape, grid, full, BIG))
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


def _walk(rng: np.random.Generator, free: _FreeSpace, point: np.ndarray, radius: float) -> list[np.ndarray]:
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


def _small_bowel(p: Patient, obstacles: Sequence[Shape], cavity: Section, start: np.ndarray) -> list[PaintOp]:
    """Loops as constrained random walks through the free space of the lower abdomen.

    They pack against each other and against the organs instead of running through them.
    Contents: fluid, positive oral contrast, gas over fluid, or collapsed (all wall, i.e.
    enhancing soft tissue: the classic pancreas mimic).
    """
    rng = p.rng
    free = _FreeSpace(obstacles, cavity)
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
            layers = [(0.0, MAT["bowel_wall"]), (wall, _bowel_fill(rng, "fluid", air, content, MAT["bowel_air"]))]
        ops.append(PaintOp("small bowel", tube, layers, replace=FAT))
    return ops


def _lungs(p: Patient) -> list[PaintOp]:
    """Lung bases: domes above liver and spleen, deepest in the posterior costophrenic recesses."""
    ops = []
    for side in (-1, 1):
        dome = Ellipsoid(p.jitter((side * 80, 15, 190), 6), (75, 95, 150 - 10 * side))
        recess = Ellipsoid(p.jitter((side * 82, 55 + p.spine_y, 130), 5), (55, 32, 105))
        ops.append(PaintOp("lung", ShapeUnion(dome, recess), [(0.0, MAT["lung"])], replace=SOFT,
                           halo=(3.0, MAT["muscle"], FAT)))  # the diaphragm
    return ops


def _lymph_nodes(p: Patient) -> list[PaintOp]:
    """A few soft-tissue nodes in peripancreatic and para-aortic fat (classic false positives)."""
    ops = []
    for _ in range(int(p.rng.integers(2, 6))):
        centre = p.jitter((p.rng.uniform(-30, 40), p.rng.uniform(-70, -30), p.rng.uniform(-40, 30)), 0) + p.shift
        radii = p.rng.uniform(3, 8, 3)
        ops.append(PaintOp("lymph node", Ellipsoid(centre, radii), [(0.0, MAT["lymph_node"])], replace=FAT))
    return ops


def _couch(p: Patient, skin: Section) -> list[PaintOp]:
    """The scanner table under the back: thin dense shell around a foam core."""
    if p.rng.random() < 0.2:
        return []
    top = skin.cy + skin.b_post + p.rng.uniform(0.0, 4.0)
    slab = Section((0, top + 30), 230, 30, 14, 8.0, 8.0)
    return [PaintOp("couch", slab, [(0.0, MAT["couch_shell"]), (2.5, MAT["couch_foam"])],
                    replace=frozenset({MAT["air"]}))]


def build_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient and return the ordered paint operations of its abdomen."""
    p = sample_patient(rng)
    ops, skin, cavity = _body(p)
    spine_ops, levels = _spine(p)
    ops += spine_ops
    ops += _ribs(p, cavity)
    kidney_ops, kidney_shapes = _kidneys(p)
    ops += kidney_ops
    # The pancreas and the duodenal C-loop are placed first; stomach, colon and gallbladder are
    # then moved clear of them (drawn independently they could overlap the gland).
    pancreas_ops, pancreas_tube, pancreas, target, landmarks = _pancreas(p)
    head_index = int(np.argmin(np.linalg.norm(pancreas_tube.centre - landmarks["pancreas_head"], axis=1)))
    duodenum_ops, duodenum = _duodenum(p, pancreas_tube.centre[head_index], float(pancreas_tube.radius[head_index]))
    spleen_ops, spleen, hilum = _spleen(p)
    stomach_ops, stomach = _stomach(p, [pancreas_tube, duodenum, spleen])
    colon_ops, colon = _colon(p, [pancreas_tube, duodenum, stomach])
    gallbladder_ops = _gallbladder(p, [pancreas_tube, duodenum])
    # The colon is painted first among the viscera: solid organs displace it and the liver
    # moulds around the hepatic flexure, instead of bowel filling every fat gap between organs.
    ops += colon_ops
    liver_ops, liver = _liver(p)
    ops += liver_ops + spleen_ops + gallbladder_ops + stomach_ops + pancreas_ops + duodenum_ops
    vessel_ops, vessels = _vessels(p, hilum, kidney_shapes, pancreas_tube, landmarks)
    ops += vessel_ops
    obstacles = [kidney_shapes["kidney_r"], kidney_shapes["kidney_l"], liver, spleen, stomach, pancreas_tube,
                 duodenum, vessels["aorta"], vessels["ivc"], vessels["sma"], vessels["smv"], *colon,
                 EllipticCylinder((0, p.spine_y, 0), 40, 30, 400)]
    ops += _small_bowel(p, obstacles, cavity, duodenum.centre[-1])
    ops += _lymph_nodes(p)
    ops += _lungs(p)
    ops += _couch(p, skin)
    landmarks.update(vessels["landmarks"])
    landmarks.update({f"vertebra_{k}": v for k, v in levels.items()})
    landmarks["spleen_hilum"] = hilum.tolist()
    return Anatomy(ops=ops, body=skin, landmarks=landmarks, pancreas=pancreas, pancreas_target_ml=target)


def render_materials(anatomy: Anatomy, grid: Grid) -> np.ndarray:
    """Paint the anatomy on `grid`: a (z, y, x) uint8 volume of material ids (air = 0)."""
    volume = np.zeros(grid.shape_zyx, np.uint8)
    for op in anatomy.ops:
        paint(volume, grid, op)
    return volume
