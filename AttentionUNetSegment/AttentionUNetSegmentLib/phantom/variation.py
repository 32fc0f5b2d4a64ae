"""What real patients and protocols vary beyond one portal-venous template, drawn per case.

Measured against real CT (`attention-unet-segment realism`, docs/phantoms.md): two of the three
labelled real cases here are non-contrast scans (liver 45-55 HU, aorta 40-80 HU) with a fatty
pancreas (mean -7 HU, a quarter of the label below -30 HU), one is cropped to 178 mm around the
spine, and their coverage runs from 90 to 280 mm. A phantom therefore draws a contrast phase,
fatty infiltration of the gland, an empty stomach, the scan's coverage (long, short, or cut through the pancreas),
an occasional crop of the field of view and a wider range of noise. The draws come from their
own random stream, so the anatomy, scanner and noise streams of a seed are unchanged by them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Optional

import numpy as np

#: Contrast phases and how often a case is drawn in each.
PHASES = (("portal_venous", 0.55), ("non_contrast", 0.25), ("arterial", 0.20))
FATTY_PANCREAS_PROBABILITY = 0.35
#: Extra interlobular fat of a fatty gland (fraction of its volume), added to the usual 2-12 %.
FATTY_PANCREAS_EXTRA = (0.08, 0.45)
LONG_SCAN_PROBABILITY, LONG_SCAN_MM = 0.30, (200.0, 260.0)
PARTIAL_COVERAGE_PROBABILITY, PARTIAL_SCAN_MM, PARTIAL_SHIFT_MM = 0.20, (70.0, 130.0), (30.0, 60.0)
CROP_PROBABILITY, CROP_FOV_MM = 0.12, (180.0, 260.0)
NOISE_SCALE = (0.6, 1.4)
#: Real stomachs are often empty (48 and 126 mL in the two labelled real cases, 290 mL in phantoms).
COLLAPSED_STOMACH_PROBABILITY, COLLAPSED_STOMACH_SCALE = 0.4, (0.55, 0.85)


@dataclass(frozen=True)
class Variation:
    """One case's protocol and patient variation (None = the scanner model's own draw)."""

    phase: str
    pancreas_fat_extra: float
    z_extent_mm: Optional[float]
    z_shift_mm: float                 # the scan centre moved along z: coverage may cut the gland
    crop_fov_mm: Optional[float]      # a field of view cropped around the pancreas
    crop_offset_mm: tuple[float, float]
    noise_scale: float
    fat_seed: int                     # places the fat lobules of a fatty gland
    stomach_scale: float = 1.0        # < 1: an empty, collapsed stomach

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sample_variation(rng: np.random.Generator, phase: Optional[str] = None) -> Variation:
    """Draw a case's variation; `phase` overrides the drawn contrast phase (the draws still happen)."""
    names, weights = zip(*PHASES)
    drawn_phase = str(rng.choice(names, p=weights))
    fatty = rng.random() < FATTY_PANCREAS_PROBABILITY
    fat_extra = float(rng.uniform(*FATTY_PANCREAS_EXTRA))
    coverage = rng.random()
    long_extent, short_extent = float(rng.uniform(*LONG_SCAN_MM)), float(rng.uniform(*PARTIAL_SCAN_MM))
    shift = float(rng.uniform(*PARTIAL_SHIFT_MM) * rng.choice([-1.0, 1.0]))
    cropped = rng.random() < CROP_PROBABILITY
    crop, offset = float(rng.uniform(*CROP_FOV_MM)), rng.normal(0.0, 10.0, 2)
    noise_scale = float(rng.uniform(*NOISE_SCALE))
    fat_seed = int(rng.integers(0, 2**31))
    collapsed, collapse = rng.random() < COLLAPSED_STOMACH_PROBABILITY, float(rng.uniform(*COLLAPSED_STOMACH_SCALE))
    if phase is not None and phase not in names:
        raise ValueError(f"unknown contrast phase {phase!r}; expected one of {', '.join(names)}")
    partial = coverage < PARTIAL_COVERAGE_PROBABILITY
    long_scan = not partial and coverage < PARTIAL_COVERAGE_PROBABILITY + LONG_SCAN_PROBABILITY
    return Variation(
        phase=phase or drawn_phase,
        pancreas_fat_extra=fat_extra if fatty else 0.0,
        z_extent_mm=short_extent if partial else long_extent if long_scan else None,
        z_shift_mm=shift if partial else 0.0,
        crop_fov_mm=crop if cropped else None,
        crop_offset_mm=(float(offset[0]), float(offset[1])),
        noise_scale=noise_scale,
        fat_seed=fat_seed,
        stomach_scale=collapse if collapsed else 1.0,
    )


#: The phantoms as they were before this variation (portal venous, no fatty gland, coverage and
#: field of view centred as the scanner model draws them): with it a seed gives the same case,
#: voxel for voxel, as the generator of before issue 12, for comparisons and old recipes.
NO_VARIATION = Variation(phase="portal_venous", pancreas_fat_extra=0.0, z_extent_mm=None, z_shift_mm=0.0,
                         crop_fov_mm=None, crop_offset_mm=(0.0, 0.0), noise_scale=1.0, fat_seed=0)


def fixed_variation(phase: Optional[str] = None) -> Variation:
    """`NO_VARIATION`, in contrast `phase` if given."""
    if phase is not None and phase not in dict(PHASES):
        raise ValueError(f"unknown contrast phase {phase!r}; expected one of {', '.join(dict(PHASES))}")
    return replace(NO_VARIATION, phase=phase or NO_VARIATION.phase)
