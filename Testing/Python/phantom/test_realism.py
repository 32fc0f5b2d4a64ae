"""Phantom-vs-real measurements: known answers on a built volume, the small real case, the command."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli.main import main
from AttentionUNetSegmentLib.phantom import realism


def _built_case(noise_hu: float = 10.0):
    """An elliptic fat body (-100 HU) on 1 mm voxels with a 'liver' box (60 HU) and a 'pancreas' box
    (30 HU) left of the midline, white noise of `noise_hu`, and a flat table slab under the back."""
    rng = np.random.default_rng(0)
    shape = (40, 160, 200)                                          # z, y (posterior down), x (left)
    z, y, x = np.indices(shape)
    body = ((x - 100) / 80.0) ** 2 + ((y - 70) / 50.0) ** 2 <= 1.0   # 160 mm wide, 100 mm deep
    ct = np.full(shape, -1000.0)
    ct[body] = -100.0
    ct[:, 50:90, 40:80] = np.where(body[:, 50:90, 40:80], 60.0, -1000.0)   # liver: patient right
    ct[5:15, 60:70, 120:140] = 30.0                                 # pancreas: left of the midline
    ct[:, 135:140, 10:190] = 200.0                                  # table, 15 mm behind the back
    ct += rng.normal(0.0, noise_hu, shape)
    labels = np.zeros(shape, np.uint8)
    labels[:, 50:90, 40:80] = 2
    labels[5:15, 60:70, 120:140] = 1
    labels[~body] = 0
    images = [sitk.GetImageFromArray(a) for a in (ct.astype(np.int16), labels)]
    for image in images:
        image.SetSpacing((1.0, 1.0, 1.0))
    return images


def test_measures_of_a_built_case_are_its_known_values():
    ct, labels = _built_case()
    m = realism.measure_case(ct, labels, {"pancreas": (1,), "liver": (2,)})
    assert m["slice_mm"] == 1.0 and m["fov_x_mm"] == 200 and m["z_extent_mm"] == 40
    assert abs(m["body_width_mm"] - 161) <= 2 and abs(m["body_depth_mm"] - 101) <= 2
    assert m["table"] == 1.0 and m["arms"] == 0.0 and m["body_truncated"] == 0.0
    assert m["pancreas.ml"] == pytest.approx(2.0) and abs(m["pancreas.hu_mean"] - 30) < 2
    assert m["pancreas.x_body"] > 0.3 and m["liver.x_body"] < -0.3       # left and right of the midline
    assert m["liver.z_from_pancreas_mm"] == pytest.approx(9.5, abs=0.6)   # liver centred at z 19.5, pancreas 10
    assert m["pancreas.cut_by_scan"] == 0.0 and m["liver.cut_by_scan"] == 1.0
    assert abs(m["fat.hu_mean"] + 100) < 2 and m["air.hu_mean"] < -990
    # White noise of 10 HU: measured as such; 3 mm blocks of 27 voxels leave about 1/sqrt(27).
    assert m["noise.fat_hu"] == pytest.approx(10.0, rel=0.1) and m["noise.liver_hu"] == pytest.approx(10.0, rel=0.1)
    assert 0.12 < m["texture.fat_ratio"] < 0.3
    louder = realism.measure_case(*_built_case(noise_hu=20.0), {"pancreas": (1,), "liver": (2,)})
    assert louder["noise.fat_hu"] == pytest.approx(2 * m["noise.fat_hu"], rel=0.1)


def test_real_example_case(real_ct_path, real_labels_path):
    case = next(c for c in realism.REAL_CASES if c.name == "TS example")
    ct, labels = sitk.ReadImage(str(real_ct_path)), sitk.ReadImage(str(real_labels_path))
    m = realism.measure_case(ct, labels, case.organ_ids)
    pancreas = sitk.GetArrayFromImage(ct)[sitk.GetArrayFromImage(labels) == 7]
    assert m["pancreas.hu_mean"] == pytest.approx(float(pancreas.mean()), abs=1e-3)
    assert m["slice_mm"] == 3.0 and 250 < m["body_width_mm"] < 400
    assert 30 < m["liver.hu_mean"] < 65                                 # a non-contrast scan
    assert 5 < m["noise.fat_hu"] < 30 and -120 < m["fat.hu_mean"] < -60
    table = realism.format_table({"TS example": m}, {"phantom 0": m, "phantom 1": m})
    assert "pancreas.hu_mean" in table.splitlines()[2 + list(m).index("pancreas.hu_mean")]
    assert "phantoms (n=2)" in table.splitlines()[0]


def test_realism_command_needs_the_data_folder(tmp_path, capsys):
    assert main(["realism", "--data", str(tmp_path / "missing"), "--phantoms", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "missing" in error and "--data" in error
    assert main(["realism", "--data", str(tmp_path), "--phantoms", "1", "-o", str(tmp_path / "no" / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
