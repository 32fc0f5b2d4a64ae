"""Procedural abdominal anatomy for the synthetic CT phantom (`generator.py` renders and writes it).

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

from typing import Optional

import numpy as np

from . import body, bowel, organs, vessels
from .painting import Anatomy, sample_patient
from .shapes import EllipticCylinder
from .variation import Variation


def build_anatomy(rng: np.random.Generator, variation: Optional[Variation] = None) -> Anatomy:
    """Draw one patient and return the ordered paint operations of its abdomen.

    `variation` (a fatty gland, a collapsed stomach) changes those organs without changing any
    draw of `rng`.
    """
    fat_extra, fat_seed = (variation.pancreas_fat_extra, variation.fat_seed) if variation else (0.0, 0)
    p = sample_patient(rng)
    ops, skin, cavity = body.body_wall(p)
    spine_ops, levels = body.spine(p)
    ops += spine_ops
    ops += body.ribs(p, cavity)
    kidney_ops, kidney_shapes = organs.kidneys(p)
    ops += kidney_ops
    # The pancreas and the duodenal C-loop are placed first; stomach, colon and gallbladder are
    # then moved clear of them (drawn independently they could overlap the gland).
    pancreas_ops, pancreas_tube, pancreas, target, landmarks = organs.pancreas(p, fat_extra, fat_seed)
    head_index = int(np.argmin(np.linalg.norm(pancreas_tube.centre - landmarks["pancreas_head"], axis=1)))
    duodenum_ops, duodenum = organs.duodenum(p, pancreas_tube.centre[head_index],
                                             float(pancreas_tube.radius[head_index]))
    spleen_ops, spleen, hilum = organs.spleen(p)
    stomach_ops, stomach = organs.stomach(p, [pancreas_tube, duodenum, spleen],
                                           variation.stomach_scale if variation else 1.0)
    colon_ops, colon = bowel.colon(p, [pancreas_tube, duodenum, stomach])
    gallbladder_ops = organs.gallbladder(p, [pancreas_tube, duodenum])
    # The colon is painted first among the viscera: solid organs displace it and the liver
    # moulds around the hepatic flexure, instead of bowel filling every fat gap between organs.
    ops += colon_ops
    liver_ops, liver = organs.liver(p)
    ops += liver_ops + spleen_ops + gallbladder_ops + stomach_ops + pancreas_ops + duodenum_ops
    vessel_ops, vessel_tubes = vessels.vessels(p, hilum, kidney_shapes, pancreas_tube, landmarks)
    ops += vessel_ops
    obstacles = [kidney_shapes["kidney_r"], kidney_shapes["kidney_l"], liver, spleen, stomach, pancreas_tube,
                 duodenum, vessel_tubes["aorta"], vessel_tubes["ivc"], vessel_tubes["sma"], vessel_tubes["smv"], *colon,
                 EllipticCylinder((0, p.spine_y, 0), 40, 30, 400)]
    ops += bowel.small_bowel(p, obstacles, cavity, duodenum.centre[-1])
    ops += bowel.lymph_nodes(p)
    ops += body.lungs(p)
    ops += body.couch(p, skin)
    landmarks.update(vessel_tubes["landmarks"])
    landmarks.update({f"vertebra_{k}": v for k, v in levels.items()})
    landmarks["spleen_hilum"] = hilum.tolist()
    return Anatomy(ops=ops, body=skin, landmarks=landmarks, pancreas=pancreas, pancreas_target_ml=target)
