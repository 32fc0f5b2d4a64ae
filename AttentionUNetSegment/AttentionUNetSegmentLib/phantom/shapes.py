"""Implicit solids with an (approximate) signed distance in mm, the building blocks of the anatomy.

Ellipsoids, superelliptic cross-sections, and tubes swept along Catmull-Rom centre-lines with a
varying radius; lobulated surfaces from band-limited noise; unions, cuts and intersections.
Each shape is evaluated only inside its own bounding box, which keeps a case fast.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .grid import Box, Grid, box_shape, intersect_boxes

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


def rotation_frame(axis_a: Sequence[float], axis_b: Sequence[float]) -> np.ndarray:
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
        return _reduce(np.minimum, [part_on_box(p, grid, box, BIG) for p in self.parts])


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
            d = np.maximum(d, np.float32(self.margin) - part_on_box(hole, grid, box, BIG, self.margin))
        return d


class Intersect(Shape):
    """The part of `a` inside `b` (maximum of the distances)."""

    def __init__(self, a: Shape, b: Shape):
        self.a, self.b = a, b

    def aabb(self):
        return self.a.aabb()

    def sdf(self, x, y, z):
        return np.maximum(self.a.sdf(x, y, z), self.b.sdf(x, y, z))

    def sdf_box(self, grid, box):
        return np.maximum(self.a.sdf_box(grid, box), np.broadcast_to(self.b.sdf_box(grid, box), box_shape(box)))


def _reduce(op, arrays):
    out = arrays[0]
    for a in arrays[1:]:
        out = op(out, a)
    return out


def part_on_box(shape: Shape, grid: Grid, box: Box, fill: np.float32, margin: float = 0.0) -> np.ndarray:
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


def shape_volume_ml(shape: Shape, step: float) -> float:
    lo, hi = shape.aabb()
    size = np.ceil((hi - lo) / step).astype(int) + 1
    grid = Grid(lo, np.full(3, step), np.eye(3), tuple(int(v) for v in size))
    box = (slice(0, size[2]), slice(0, size[1]), slice(0, size[0]))
    inside = np.broadcast_to(shape.sdf_box(grid, box), box_shape(box)) < 0
    return float(inside.sum()) * step ** 3 / 1000.0


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
