"""The aorta and caval veins, the portal system, the visceral and renal vessels, placed from the gland."""

from __future__ import annotations

import numpy as np

from .materials import ARTERY, ENHANCED_SOFT, FAT, MAT, PORTAL, SOFT
from .painting import PaintOp, Patient
from .shapes import Shape, Tube


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


def vessels(p: Patient, spleen_hilum: np.ndarray, kidneys: dict[str, Shape], pancreas: Tube,
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
