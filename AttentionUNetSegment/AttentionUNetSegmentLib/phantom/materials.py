"""Tissues of the phantom: their organ labels and HU ranges, and the label values written.

Each painted voxel holds a material id (its index in `MATERIALS`); the scanner model turns the
ids into Hounsfield units with a per-case draw from each range (`generator.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


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
    # Fatty infiltration of the pancreas: lobules of fat inside the outline (appended last so the
    # per-case HU draws of every other tissue stay as they were).
    Material("pancreas_fat_lobule", "pancreas", (-105, -75), 12),
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
ENHANCED_SOFT = SOFT | {MAT["pancreas"], MAT["pancreas_fat"], MAT["pancreas_fat_lobule"], MAT["pancreatic_duct"],
                        MAT["liver"]}
ARTERY = ((0.0, MAT["artery"]),)
PORTAL = ((0.0, MAT["portal_vein"]),)

# HU ranges of the enhancing tissues in the other contrast phases (`Material.hu` is the portal-
# venous one). Non-contrast: blood 35-50 HU, parenchyma by its own density (liver above spleen);
# late arterial ("pancreatic") phase: bright aorta and arteries, corticomedullary kidneys, the
# pancreas at its peak, liver barely enhanced, portal vein filling, the infrarenal IVC still dark.
_NON_CONTRAST = {"liver": (40, 65), "spleen": (35, 55), "kidney_cortex": (25, 40), "kidney_medulla": (22, 35),
                 "pancreas": (30, 50), "wall": (30, 50), "blood": (35, 50), "lymph_node": (30, 45)}
_ARTERIAL = {"liver": (60, 85), "spleen": (90, 140), "kidney_cortex": (160, 240), "kidney_medulla": (50, 90),
             "pancreas": (100, 150), "wall": (70, 125), "aorta": (250, 400), "artery": (230, 380),
             "ivc": (60, 110), "portal_vein": (100, 160), "renal_vein": (140, 200), "mesenteric_vessel": (140, 240),
             "lymph_node": (40, 70)}
_KIND = {"kidney_cortex_r": "kidney_cortex", "kidney_cortex_l": "kidney_cortex", "kidney_medulla_r": "kidney_medulla",
         "kidney_medulla_l": "kidney_medulla", "gallbladder_wall": "wall", "stomach_wall": "wall",
         "duodenum_wall": "wall", "bowel_wall": "wall", "colon_wall": "wall"}


def phase_hu(material: Material, phase: str) -> tuple[float, float]:
    """The HU range a material's per-case mean is drawn from in contrast `phase`."""
    if not material.enhancing or phase == "portal_venous":
        return material.hu
    kind = _KIND.get(material.name, material.name)
    if phase == "non_contrast":
        return _NON_CONTRAST.get(kind, _NON_CONTRAST["blood"])
    if phase == "arterial":
        return _ARTERIAL[kind]
    raise ValueError(f"unknown contrast phase {phase!r}")
