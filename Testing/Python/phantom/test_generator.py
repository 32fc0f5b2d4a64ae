"""Synthetic abdominal CT phantoms: anatomy statistics, determinism, orientation, dataset writing.

Budget: one full-size case (timed) and two `--fast` cases (1 x 1 x 5 mm) are generated once per
module; the CLI test writes exactly those two fast cases again and must reproduce them byte for
byte, which is also the determinism check.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli.main import main
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.phantom import generator as phantom
from AttentionUNetSegmentLib.phantom.anatomy import build_anatomy
from AttentionUNetSegmentLib.phantom.materials import ORGAN_LABELS
from AttentionUNetSegmentLib.phantom import variation
from AttentionUNetSegmentLib.phantom.shapes import shape_volume_ml
from AttentionUNetSegmentLib.phantom.variation import sample_variation

CLI_SEED = 7
FAST_SEEDS = [phantom.case_seed(CLI_SEED, i) for i in range(2)]  # what `--seed 7 --cases 2` makes


def _arrays(case: phantom.PhantomCase) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(case.ct), sitk.GetArrayFromImage(case.labels)


@pytest.fixture(scope="module")
def full_case():
    start = time.perf_counter()
    case = phantom.generate_case(0, all_organs=True)
    seconds = time.perf_counter() - start
    md = case.metadata
    print(f"\nfull-size phantom: {md['size_xyz']} voxels, {md['spacing_xyz']} mm, {seconds:.2f} s")
    return case, seconds


@pytest.fixture(scope="module")
def fast_cases():
    return [phantom.generate_case(seed, all_organs=True, **phantom.FAST_SETTINGS) for seed in FAST_SEEDS]


def _all_cases(full_case, fast_cases):
    return [full_case[0], *fast_cases]


def best_interval_dice(hu: np.ndarray, target: np.ndarray, lo: int = -300, hi: int = 700) -> float:
    """Best Dice of any HU interval [a, b) used as a pancreas classifier (exhaustive search)."""
    bins = np.clip(np.rint(hu), lo, hi).astype(np.int64) - lo
    n = hi - lo + 1
    tp = np.concatenate([[0.0], np.cumsum(np.bincount(bins[target], minlength=n))])
    total = np.concatenate([[0.0], np.cumsum(np.bincount(bins, minlength=n))])
    inside = tp[None, :] - tp[:, None]           # pancreas voxels in [a, b)
    predicted = total[None, :] - total[:, None]  # all voxels in [a, b)
    dice = np.where(predicted > 0, 2 * inside / (target.sum() + np.maximum(predicted, 1)), 0.0)
    return float(dice.max())


def _physical_points(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """LPS positions (mm) of the voxels of `mask` (z, y, x) of `image`."""
    index = np.argwhere(mask)[:, ::-1].astype(float)  # (i, j, k)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + (index * np.array(image.GetSpacing())) @ direction.T


def _centroid(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """LPS centroid (mm) of `mask`: the index-space mean mapped once (the mapping is affine)."""
    mean_index = np.argwhere(mask).mean(axis=0)[::-1]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + direction @ (mean_index * np.array(image.GetSpacing()))


def _min_distance_mm(labels: sitk.Image, a: int, b: int, within_mm: float = 20.0) -> float:
    """Smallest distance from a voxel of label `a` to one of label `b` (exact, in mm; inf if
    none lies within `within_mm` of the box around `a`, which keeps the distance map small)."""
    array = sitk.GetArrayViewFromImage(labels)
    found = np.argwhere(array == a)
    margin = np.ceil(within_mm / np.array(labels.GetSpacing())[::-1]).astype(int)
    lo = np.maximum(found.min(0) - margin, 0)
    hi = np.minimum(found.max(0) + margin + 1, array.shape)
    crop = labels[int(lo[2]):int(hi[2]), int(lo[1]):int(hi[1]), int(lo[0]):int(hi[0])]
    distance = sitk.SignedMaurerDistanceMap(crop == a, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    values = sitk.GetArrayViewFromImage(distance)[sitk.GetArrayViewFromImage(crop) == b]
    return float(values.min()) if values.size else float("inf")


# ----------------------------------------------------------------------------------- anatomy


def test_full_size_case_spacing_and_speed(full_case):
    case, seconds = full_case
    inplane, thickness = case.metadata["pixel_spacing_mm"], case.metadata["slice_thickness_mm"]
    assert 0.6 <= inplane <= 1.0 and 1.0 <= thickness <= 5.0
    # Whatever the header orientation, the stored spacing is a permutation of the scanner's.
    assert np.allclose(sorted(case.ct.GetSpacing()), sorted([inplane, inplane, thickness]), atol=1e-5)
    assert case.ct.GetPixelID() == sitk.sitkInt16 and case.labels.GetPixelID() == sitk.sitkUInt8
    assert max(case.ct.GetSize()) <= phantom.MAX_MATRIX
    # "A case in seconds": generous bound for a loaded 2-core CI machine (typically 2-5 s).
    assert seconds < 60, seconds


# Median HU of each labelled organ per contrast phase (after partial volume and noise). The
# portal-venous windows are the original ones; the others follow the real non-contrast cases
# (TotalSegmentator s0009 and example: liver 45-54, spleen 33-53, aorta 42-79, portal vein 26-36)
# and the usual late-arterial values.
_COMMON_WINDOWS = {"gallbladder": (-20, 50), "vertebrae": (150, 600), "lungs": (-920, -600)}
HU_WINDOWS = {
    "portal_venous": {"pancreas": (40, 130), "liver": (80, 140), "spleen": (85, 145), "kidney_right": (110, 200),
                      "kidney_left": (110, 200), "aorta": (120, 210), "portal_splenic_vein": (100, 210)},
    "non_contrast": {"pancreas": (-30, 60), "liver": (35, 75), "spleen": (30, 65), "kidney_right": (10, 55),
                     "kidney_left": (10, 55), "aorta": (25, 65), "portal_splenic_vein": (15, 65)},
    "arterial": {"pancreas": (60, 160), "liver": (50, 100), "spleen": (75, 155), "kidney_right": (60, 240),
                 "kidney_left": (60, 240), "aorta": (200, 420), "portal_splenic_vein": (70, 175)},
}


def _check_hu_windows(case: phantom.PhantomCase) -> None:
    ct, labels = _arrays(case)
    windows = {**HU_WINDOWS[case.metadata["phase"]], **_COMMON_WINDOWS}
    for organ, (low, high) in windows.items():
        mask = labels == ORGAN_LABELS[organ]
        if organ == "gallbladder" and not mask.any():
            continue  # cholecystectomy is modelled
        if mask.sum() < 500 and organ in ("lungs", "spleen", "kidney_right", "kidney_left", "liver"):
            continue  # lung bases, kidneys or spleen can lie outside a short or shifted scan
        median = float(np.median(ct[mask]))
        assert low <= median <= high, (organ, median, case.metadata["seed"], case.metadata["phase"])


def test_every_contrast_phase_in_its_hu_windows():
    phases = [phantom.generate_case(FAST_SEEDS[0], all_organs=True, phase=name, **phantom.FAST_SETTINGS)
              for name in HU_WINDOWS]
    for case, name in zip(phases, HU_WINDOWS):
        assert case.metadata["phase"] == name
        _check_hu_windows(case)
    # The phase changes intensities only: the same patient, voxel for voxel the same labels.
    for case in phases[1:]:
        assert np.array_equal(_arrays(case)[1], _arrays(phases[0])[1])
    liver = [float(np.median(_arrays(c)[0][_arrays(c)[1] == ORGAN_LABELS["liver"]])) for c in phases]
    aorta = [float(np.median(_arrays(c)[0][_arrays(c)[1] == ORGAN_LABELS["aorta"]])) for c in phases]
    assert liver[1] < liver[2] < liver[0] and aorta[1] < aorta[0] < aorta[2]
    with pytest.raises(ValueError, match="unknown contrast phase"):
        phantom.generate_case(0, phase="delayed", **phantom.FAST_SETTINGS)


def test_hu_ranges_per_organ(full_case, fast_cases):
    for case in _all_cases(full_case, fast_cases):
        _check_hu_windows(case)
        ct, labels = _arrays(case)
        hu = case.metadata["hu_means"]
        assert -120 <= hu["fat_visceral"] <= -80 and -120 <= hu["fat_subcutaneous"] <= -90
        assert 40 <= hu["muscle"] <= 65
        outside = ct[labels == 0]
        assert outside.min() <= -990  # air around the body


def test_pancreas_volume_over_seeds(full_case, fast_cases):
    rendered = [c.metadata["pancreas_ml"] for c in _all_cases(full_case, fast_cases)]
    assert all(40 <= v <= 120 for v in rendered), rendered
    # The gland's calibrated model volume over more seeds (anatomy only, no rendering).
    modelled = [shape_volume_ml(build_anatomy(np.random.default_rng(s)).pancreas, 2.0) for s in range(4)]
    assert all(40 <= v <= 120 for v in modelled), modelled
    assert max(modelled) - min(modelled) > 10  # sizes really vary


def test_pancreas_connected_and_in_its_neighbourhood(full_case, fast_cases):
    for case in _all_cases(full_case, fast_cases):
        pancreas = sitk.GetArrayFromImage(case.labels) == ORGAN_LABELS["pancreas"]
        components = sitk.ConnectedComponent(sitk.GetImageFromArray(pancreas.astype(np.uint8)), True)
        assert sitk.GetArrayViewFromImage(components).max() == 1
        assert case.metadata["pancreas_islands_removed_ml"] < 0.03 * case.metadata["pancreas_ml"]
        largest_step = max(case.labels.GetSpacing())
        # The head sits in the duodenal C-loop; the splenic vein / SMV confluence lies against it.
        assert _min_distance_mm(case.labels, ORGAN_LABELS["pancreas"], ORGAN_LABELS["duodenum"]) <= largest_step
        assert _min_distance_mm(case.labels, ORGAN_LABELS["pancreas"], ORGAN_LABELS["portal_splenic_vein"]) < 10
        assert _min_distance_mm(case.labels, ORGAN_LABELS["pancreas"], ORGAN_LABELS["visceral_arteries"]) < 15


def test_pancreas_not_separable_by_intensity(full_case, fast_cases):
    for case in _all_cases(full_case, fast_cases):
        ct, labels = _arrays(case)
        pancreas = labels == ORGAN_LABELS["pancreas"]
        body = ct > -300
        assert best_interval_dice(ct[body], pancreas[body]) < 0.5
        # Even within 30 mm of the gland (where bowel, vessels and duodenum crowd it).
        margin = np.ceil(30.0 / np.array(case.ct.GetSpacing())[::-1]).astype(int)
        found = np.argwhere(pancreas)
        box = tuple(slice(max(0, lo - m), hi + m + 1) for lo, hi, m in zip(found.min(0), found.max(0), margin))
        near = body[box]
        assert best_interval_dice(ct[box][near], pancreas[box][near]) < 0.5


def test_anatomy_is_in_place_in_the_patient(full_case):
    case, _ = full_case
    labels = sitk.GetArrayFromImage(case.labels)
    offset = np.array(case.metadata["patient_frame_offset_lps"])

    def centre(organ):  # patient frame: x left, y posterior, origin at the L1 vertebral body
        return _centroid(case.labels, labels == ORGAN_LABELS[organ]) - offset

    pancreas = _physical_points(case.labels, labels == ORGAN_LABELS["pancreas"]) - offset
    order = np.argsort(pancreas[:, 0])
    tenth = max(1, len(order) // 10)
    head, tail = pancreas[order[:tenth]].mean(0), pancreas[order[-tenth:]].mean(0)
    assert head[0] < -10 and tail[0] > 40          # head right of midline, tail to the left
    assert tail[2] > head[2] - 5                     # the tail rises towards the splenic hilum
    assert pancreas[:, 1].mean() < centre("vertebrae")[1] - 25   # anterior to the spine
    assert centre("liver")[0] < -20 and centre("spleen")[0] > 50
    assert np.linalg.norm(tail - centre("spleen")) < 90  # the tail points at the splenic hilum


# ------------------------------------------------------------------------------ determinism


def test_different_seeds_differ(fast_cases):
    a, b = (_arrays(c)[1] for c in fast_cases)
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert fast_cases[0].metadata["pancreas_ml"] != fast_cases[1].metadata["pancreas_ml"]


def test_orientation_changes_the_header_not_the_anatomy(fast_cases):
    reference = fast_cases[0]
    seed, code = FAST_SEEDS[0], reference.metadata["orientation"]
    other_code = "PSR" if code != "PSR" else "RAS"
    # A different header orientation is an exact transpose/flip: back in the reference's
    # orientation the voxels, spacing and origin are identical.
    moved = phantom.generate_case(seed, all_organs=True, orientation=other_code, **phantom.FAST_SETTINGS)
    assert moved.ct.GetDirection() != reference.ct.GetDirection()
    for mine, theirs in ((moved.ct, reference.ct), (moved.labels, reference.labels)):
        back = sitk.DICOMOrient(mine, code)
        assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(theirs))
        assert np.allclose(back.GetOrigin(), theirs.GetOrigin(), atol=1e-4)
        assert np.allclose(back.GetDirection(), theirs.GetDirection(), atol=1e-6)
    # A gantry tilt re-samples the same patient on oblique slices: the gland stays in place.
    tilted = phantom.generate_case(seed, all_organs=True, tilt_deg=8.0, **phantom.FAST_SETTINGS)
    assert not np.allclose(tilted.ct.GetDirection(), reference.ct.GetDirection(), atol=1e-3)
    a = _physical_points(reference.labels, sitk.GetArrayViewFromImage(reference.labels) == 1)
    b = _physical_points(tilted.labels, sitk.GetArrayViewFromImage(tilted.labels) == 1)
    assert np.linalg.norm(a.mean(0) - b.mean(0)) < 3.0
    assert 0.9 < tilted.metadata["pancreas_ml"] / reference.metadata["pancreas_ml"] < 1.1


def test_acquisition_draws_cover_the_required_ranges():
    anatomy = build_anatomy(np.random.default_rng(0))
    draws = [phantom.sample_acquisition(np.random.default_rng(s), anatomy) for s in range(300)]
    inplane = np.array([d.spacing_xyz[0] for d in draws])
    slices = np.array([d.spacing_xyz[2] for d in draws])
    assert inplane.min() >= 0.6 and inplane.max() <= 1.0 and np.ptp(inplane) > 0.3
    assert slices.min() >= 1.0 and slices.max() <= 5.0 and len(set(slices)) >= 5
    assert len({d.orientation for d in draws}) >= 5
    assert any(d.tilt_deg != 0 for d in draws) and sum(d.tilt_deg == 0 for d in draws) > 200
    size = np.array([d.size_xyz[0] for d in draws])
    fov = size * inplane
    assert fov.max() <= 421 and np.all((fov >= 299) | (size == phantom.MAX_MATRIX))


# ----------------------------------------------------------------------------------- dataset


def test_cli_writes_the_decathlon_layout_and_refuses_to_clobber(tmp_path, fast_cases, capsys):
    out = tmp_path / "phantoms"
    args = ["phantom", "-o", str(out), "--cases", "2", "--seed", str(CLI_SEED), "--fast", "--all-organs"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "phantom_000" in printed and "phantom_001" in printed and " mL" in printed

    description = json.loads((out / "dataset.json").read_text())
    for key in ("name", "description", "tensorImageSize", "modality", "labels", "numTraining", "training"):
        assert key in description
    assert "synthetic" in description["description"].lower()
    assert description["tensorImageSize"] == "3D" and description["modality"] == {"0": "CT"}
    assert description["labels"]["0"] == "background" and description["labels"]["1"] == "pancreas"
    assert description["labels"][str(ORGAN_LABELS["liver"])] == "liver"
    assert description["numTraining"] == 2 and len(description["training"]) == 2
    assert [c["seed"] for c in description["generator"]["cases"]] == FAST_SEEDS

    for entry, expected in zip(description["training"], fast_cases):
        image = sitk.ReadImage(str(out / entry["image"]))
        label = sitk.ReadImage(str(out / entry["label"]))
        assert entry["image"].endswith("_0000.nii.gz")
        assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
        assert image.GetSize() == label.GetSize()
        assert np.allclose(image.GetOrigin(), label.GetOrigin())
        assert np.allclose(image.GetDirection(), label.GetDirection())
        # Byte-identical to the same seed generated in this process: deterministic per seed.
        assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(expected.ct))
        assert np.array_equal(sitk.GetArrayViewFromImage(label), sitk.GetArrayViewFromImage(expected.labels))
        assert np.allclose(image.GetSpacing(), expected.ct.GetSpacing(), atol=1e-5)
        assert np.allclose(image.GetDirection(), expected.ct.GetDirection(), atol=1e-5)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    # --overwrite replaces the whole dataset: one pancreas-only case, the old second case gone. (The
    # folder given the old way, as a positional argument, still works, with a one-line warning.)
    assert main(["phantom", str(out), "--cases", "1", "--seed", str(CLI_SEED), "--fast", "--overwrite"]) == 0
    assert capsys.readouterr().err == "warning: `phantom OUT_DIR` is deprecated; use `phantom -o OUT_DIR`\n"
    description = json.loads((out / "dataset.json").read_text())
    assert description["numTraining"] == 1 and description["labels"] == {"0": "background", "1": "pancreas"}
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["phantom_000.nii.gz"]
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "phantom_000.nii.gz")))
    assert np.array_equal(label, (sitk.GetArrayViewFromImage(fast_cases[0].labels) == 1).astype(np.uint8))


def test_interrupted_run_leaves_no_partial_files(tmp_path, monkeypatch):
    out = tmp_path / "broken"
    real = phantom.generate_case
    calls = []

    def failing(seed, **kwargs):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(seed, **kwargs)

    monkeypatch.setattr(phantom, "generate_case", failing)
    with pytest.raises(KeyboardInterrupt):
        phantom.write_dataset(out, 3, seed=1, fast=True)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["imagesTr/phantom_000_0000.nii.gz", "labelsTr/phantom_000.nii.gz"]  # no dataset.json
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    with pytest.raises(InputError, match="overwrite"):   # an interrupted dataset is still protected
        phantom.write_dataset(out, 1, seed=1, fast=True)


def test_output_folder_errors(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        phantom.write_dataset(a_file, 1, seed=0)
    with pytest.raises(InputError, match="does not exist"):
        phantom.write_dataset(tmp_path / "missing" / "out", 1, seed=0)


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["phantom", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--output", "--cases", "--seed", "--all-organs", "--overwrite", "--fast", "--no-variation"):
        assert option in text
    assert "default: 10" in text and "default: 0" in text


def test_gaussian_blur_keeps_levels_and_noise_gain_gives_unit_std():
    rng = np.random.default_rng(0)
    sigma = (0.0, 0.8, 1.5)                                  # z untouched, y and x smoothed
    noise = rng.standard_normal((8, 96, 96), dtype=np.float32)
    smoothed = phantom.gaussian_blur(noise, sigma)
    assert smoothed.dtype == np.float32 and smoothed.shape == noise.shape
    assert abs(float(smoothed.std()) / phantom.noise_gain(sigma) - 1.0) < 0.05
    assert float(smoothed.std()) < 0.5                       # really low-passed
    np.testing.assert_allclose(phantom.gaussian_blur(np.full((3, 9, 9), 42.0), sigma), 42.0, rtol=1e-5)
    # Along z (sigma 0) every slice stays independent.
    spike = np.zeros((5, 9, 9), np.float32)
    spike[2, 4, 4] = 1.0
    assert not phantom.gaussian_blur(spike, sigma)[[0, 1, 3, 4]].any()
    assert phantom.phantom_case_name(3, 10) == "phantom_003" and phantom.phantom_case_name(3, 5000) == "phantom_0003"


def test_variation_draws_are_bounded_and_mixed():
    draws = [sample_variation(np.random.default_rng(s)) for s in range(400)]
    phases = [d.phase for d in draws]
    for name, share in variation.PHASES:
        assert abs(phases.count(name) / len(draws) - share) < 0.08, name
    fat = np.array([d.pancreas_fat_extra for d in draws])
    assert 0.25 < np.mean(fat > 0) < 0.45 and fat.max() <= variation.FATTY_PANCREAS_EXTRA[1]
    extents = np.array([d.z_extent_mm or np.nan for d in draws])
    assert np.nanmin(extents) >= 70 and np.nanmax(extents) <= 260
    shifted = [d for d in draws if d.z_shift_mm]
    assert shifted and all(d.z_extent_mm <= 130 and 30 <= abs(d.z_shift_mm) <= 60 for d in shifted)
    crops = [d.crop_fov_mm for d in draws if d.crop_fov_mm]
    assert 0.05 < len(crops) / len(draws) < 0.2 and min(crops) >= 180 and max(crops) <= 260
    assert all(0.6 <= d.noise_scale <= 1.4 for d in draws)
    # Deterministic per seed, and the phase override leaves every other draw as it was.
    assert sample_variation(np.random.default_rng(5)) == sample_variation(np.random.default_rng(5))
    forced = sample_variation(np.random.default_rng(5), phase="arterial")
    assert forced.phase == "arterial" and forced.noise_scale == draws[5].noise_scale


def test_partial_coverage_and_fatty_gland():
    # case_seed(0, 6): partial coverage (a 114 mm scan shifted 50 mm) and a fatty gland.
    seed = phantom.case_seed(0, 6)
    cut = phantom.generate_case(seed, all_organs=True, spacing_xyz=(1.0, 1.0, 5.0))
    whole = phantom.generate_case(seed, all_organs=True, spacing_xyz=(1.0, 1.0, 5.0), z_extent_mm=260.0)
    assert cut.metadata["variation"]["z_shift_mm"] != 0 and cut.metadata["pancreas_cut_by_scan"]
    assert not whole.metadata["pancreas_cut_by_scan"]
    assert 0 < cut.metadata["pancreas_ml"] < 0.9 * whole.metadata["pancreas_ml"]
    assert 40 <= whole.metadata["pancreas_ml"] <= 120
    # Fatty infiltration: a real share of the label is fat (s0009: 24 % below -30 HU).
    ct, labels = _arrays(whole)
    fat_share = float(np.mean(ct[labels == ORGAN_LABELS["pancreas"]] < -30))
    assert whole.metadata["variation"]["pancreas_fat_extra"] > 0.3 and 0.1 < fat_share < 0.6, fat_share
    # The crop of the field of view centres on the gland and cuts the body at the image edges.
    cropped = next(s for s in range(200) if sample_variation(
        np.random.default_rng(np.random.SeedSequence(s).spawn(5)[4])).crop_fov_mm)
    case = phantom.generate_case(cropped, all_organs=True, spacing_xyz=(1.0, 1.0, 5.0), z_extent_mm=60.0)
    assert case.metadata["field_of_view_mm"] <= 261
    ct = sitk.GetArrayFromImage(sitk.DICOMOrient(case.ct, "LPS"))
    assert (ct[:, :, [0, -1]] > -500).any() and (sitk.GetArrayViewFromImage(case.labels) == 1).any()


def test_collapsed_stomach_is_smaller_and_leaves_the_rest_of_the_patient():
    draws = [sample_variation(np.random.default_rng(s)) for s in range(300)]
    scales = np.array([d.stomach_scale for d in draws])
    assert 0.3 < np.mean(scales < 1) < 0.5 and scales.min() >= variation.COLLAPSED_STOMACH_SCALE[0]
    full = sample_variation(np.random.default_rng(1), phase="portal_venous")
    empty = type(full)(**{**full.__dict__, "stomach_scale": 0.6})
    glands = [shape_volume_ml(build_anatomy(np.random.default_rng(3), v).pancreas, 2.0) for v in (full, empty)]
    assert glands[0] == glands[1]                                      # the pancreas does not move
    stomachs = [next(op.shape for op in build_anatomy(np.random.default_rng(3), v).ops if op.name == "stomach")
                for v in (full, empty)]
    assert shape_volume_ml(stomachs[1], 2.0) < 0.5 * shape_volume_ml(stomachs[0], 2.0)


def test_no_variation_is_the_portal_venous_template(fast_cases):
    seed = FAST_SEEDS[1]                                   # drawn arterial, with a long scan
    assert fast_cases[1].metadata["phase"] == "arterial"
    plain = phantom.generate_case(seed, all_organs=True, vary=False, **phantom.FAST_SETTINGS)
    assert plain.metadata["phase"] == "portal_venous"
    assert plain.metadata["variation"] == variation.NO_VARIATION.as_dict()
    # The same grid (the z-range is given), other intensities.
    assert _arrays(plain)[0].shape == _arrays(fast_cases[1])[0].shape
    assert not np.array_equal(_arrays(plain)[0], _arrays(fast_cases[1])[0])
    forced = phantom.generate_case(seed, all_organs=True, vary=False, phase="non_contrast", **phantom.FAST_SETTINGS)
    assert forced.metadata["phase"] == "non_contrast"
