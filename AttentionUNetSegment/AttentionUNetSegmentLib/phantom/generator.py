"""Synthetic abdominal CT phantoms with pancreas labels, written in the Decathlon layout.

`attention-unet-segment phantom OUT_DIR --cases N --seed S` writes ``imagesTr/phantom_XXX_0000.nii.gz``
(int16 HU), ``labelsTr/phantom_XXX.nii.gz`` (uint8, 1 = pancreas) and ``dataset.json``.

A case is rendered the way a scanner sees the anatomy of `anatomy.py`: on the
acquisition grid (random in-plane spacing 0.6-1.0 mm, slices 1-5 mm, occasionally a gantry
tilt), with each thick slice integrated over its thickness (sub-slices averaged), an in-plane
Gaussian point-spread function, correlated parenchymal texture and quantum noise. The volume is
then stored in a random but exact header orientation (LPS, RAS, reversed slices, permuted axes):
the array is transposed/flipped and the direction matrix follows, so the physical anatomy is
identical whatever the header says. Each case depends only on its seed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.postprocessing import largest_component
from .anatomy import build_anatomy
from .grid import Grid
from .materials import MATERIALS, ORGAN_LABELS, phase_hu
from .painting import Anatomy, render_materials
from .variation import Variation, fixed_variation, sample_variation

SLICE_THICKNESSES_MM = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
SLICE_WEIGHTS = (0.2, 0.1, 0.1, 0.15, 0.15, 0.15, 0.15)
INPLANE_SPACING_MM = (0.6, 1.0)
# Header orientations and how often scanners/converters write them: DICOM-like LPS, NIfTI
# converters' RAS, slices stored head-first, and rare permuted (coronal/sagittal-stored) axes.
ORIENTATIONS = (("LPS", 0.4), ("RAS", 0.3), ("LPI", 0.1), ("RAI", 0.05), ("LAS", 0.05),
                ("LSP", 0.05), ("PSR", 0.05))
GANTRY_TILT_PROBABILITY = 0.15
MAX_MATRIX = 512
CASE_PREFIX = "phantom"


@dataclass
class PhantomCase:
    """One synthetic case: CT (int16 HU) and labels (uint8) on the same grid."""

    ct: sitk.Image
    labels: sitk.Image
    organ_labels: dict[str, int]
    metadata: dict = field(default_factory=dict)


@dataclass
class Acquisition:
    """Scanner settings of one case (the render grid is derived from these)."""

    spacing_xyz: tuple[float, float, float]
    size_xyz: tuple[int, int, int]
    tilt_deg: float
    orientation: str
    noise_hu: float
    psf_fwhm_mm: float
    centre: np.ndarray            # patient-frame centre of the field of view
    offset: np.ndarray            # patient frame -> scanner (header) coordinates


# ------------------------------------------------------------------------------ acquisition


def sample_acquisition(rng: np.random.Generator, anatomy: Anatomy, spacing_xyz=None, fov_mm=None,
                        z_extent_mm=None, orientation=None, tilt_deg=None) -> Acquisition:
    """Random scanner settings; any argument given overrides its draw (the draws still happen)."""
    inplane = float(rng.uniform(*INPLANE_SPACING_MM))
    thickness = float(rng.choice(SLICE_THICKNESSES_MM, p=SLICE_WEIGHTS))
    spacing = (inplane, inplane, thickness) if spacing_xyz is None else tuple(float(s) for s in spacing_xyz)
    body = anatomy.body
    width = 2 * body.a
    fov = float(np.clip(width + rng.uniform(10, 60), 300, 420)) if fov_mm is None else float(fov_mm)
    extent = float(rng.uniform(120, 170)) if z_extent_mm is None else float(z_extent_mm)
    codes, weights = zip(*ORIENTATIONS)
    code = str(rng.choice(codes, p=weights))
    tilted = rng.random() < GANTRY_TILT_PROBABILITY
    tilt = float(rng.uniform(5, 15) * rng.choice([-1, 1])) if tilted else 0.0
    noise = float(rng.uniform(10, 20))
    psf = float(rng.uniform(0.9, 1.4))
    head = np.array(anatomy.landmarks["pancreas_head"])
    tail = np.array(anatomy.landmarks["pancreas_tail"])
    centre = np.array([rng.uniform(-15, 15),
                       body.cy + (body.b_post - body.b_ant) / 2 + rng.uniform(-15, 15),
                       (head[2] + tail[2]) / 2 + rng.uniform(-15, 15)])
    offset = np.array([rng.uniform(-30, 30), rng.uniform(-60, 60), rng.uniform(-700, 100)])
    # Scanners reconstruct at most 512 x 512: a fine spacing then narrows the field of view.
    size = (min(MAX_MATRIX, int(math.ceil(fov / spacing[0]))), min(MAX_MATRIX, int(math.ceil(fov / spacing[1]))),
            max(8, int(round(extent / spacing[2]))))
    return Acquisition(spacing, size, tilt if tilt_deg is None else float(tilt_deg),
                       code if orientation is None else orientation, noise, psf, centre, offset)


def _acquisition_grid(acq: Acquisition, subslices: int = 1) -> Grid:
    """The scanner grid in the patient frame; with `subslices` > 1 each slice is split in z."""
    angle = math.radians(acq.tilt_deg)
    direction = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    spacing = np.array([acq.spacing_xyz[0], acq.spacing_xyz[1], acq.spacing_xyz[2] / subslices])
    size = (acq.size_xyz[0], acq.size_xyz[1], acq.size_xyz[2] * subslices)
    # Sub-slice centres split each slice evenly; slice i is centred where it is on the final grid.
    first_centre = acq.centre - direction @ ((np.array(acq.size_xyz, float) - 1) / 2 * np.array(acq.spacing_xyz))
    origin = first_centre - direction[:, 2] * (acq.spacing_xyz[2] / 2 - spacing[2] / 2)
    return Grid(origin, spacing, direction, size)


def subslices_for(thickness: float) -> int:
    """Sub-slices that integrate one slice's profile (odd, so the centre one gives the label).

    Up to 2 mm a slice is sampled once; thicker slices are averaged over 3 sub-slices (0.8 to
    1.7 mm apart), which gives their partial-volume blur at a third of the cost of 1 mm sampling.
    """
    return 1 if thickness <= 2.0 else 3


# ------------------------------------------------------------------------------ intensities


def _material_tables(rng: np.random.Generator, phase: str = "portal_venous") -> tuple[np.ndarray, np.ndarray]:
    """Per-case mean HU and texture amplitude for every material (lookup tables by id).

    Enhancing tissues take their range from the contrast `phase`; the draws are the same in
    every phase, so a seed's portal-venous case is what it was before phases existed.
    """
    timing = rng.uniform(0, 1)  # contrast timing shared by every enhancing tissue
    mean = np.zeros(256, np.float32)
    texture = np.zeros(256, np.float32)
    for index, material in enumerate(MATERIALS):
        lo, hi = phase_hu(material, phase)
        u = float(np.clip(timing + rng.normal(0, 0.25), 0, 1)) if material.enhancing else float(rng.uniform())
        mean[index] = lo + (hi - lo) * u
        texture[index] = material.texture
    return mean, texture


def gaussian_blur(volume: np.ndarray, sigma_zyx_vox: Sequence[float]) -> np.ndarray:
    """`volume` (z, y, x) smoothed by a Gaussian of `sigma_zyx_vox` voxels per axis (float32).

    SimpleITK's discrete Gaussian (sampled kernel, edges extended): exact for the sub-voxel to
    few-voxel widths used here, where a recursive filter is not. Axes with sigma <= 0.3 voxel
    are left alone (the kernel would be a single tap).
    """
    variance = [float(s) ** 2 if s > 0.3 else 0.0 for s in reversed(sigma_zyx_vox)]   # (x, y, z)
    if not any(variance):
        return np.asarray(volume, np.float32)
    image = sitk.GetImageFromArray(np.asarray(volume, np.float32))
    smoothed = sitk.DiscreteGaussian(image, variance=variance, maximumKernelWidth=64, maximumError=0.01,
                                     useImageSpacing=False)
    return sitk.GetArrayFromImage(smoothed)


def noise_gain(sigma_zyx_vox: Sequence[float]) -> float:
    """Standard deviation of white unit noise after `gaussian_blur` (the filter's impulse energy)."""
    radius = [int(math.ceil(4 * s)) + 1 for s in sigma_zyx_vox]
    impulse = np.zeros([2 * r + 1 for r in radius], np.float32)
    impulse[tuple(radius)] = 1.0
    return float(np.sqrt(np.sum(gaussian_blur(impulse, sigma_zyx_vox).astype(np.float64) ** 2)))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], sigma_vox: Sequence[float]) -> np.ndarray:
    """White noise low-pass filtered to `sigma_vox` (z, y, x) voxels, rescaled to unit std."""
    noise = gaussian_blur(rng.standard_normal(shape, dtype=np.float32), sigma_vox)
    return noise / np.float32(noise_gain(sigma_vox))


def _add_texture(level: np.ndarray, amplitude: np.ndarray, rng: np.random.Generator, spacing_xyz) -> None:
    """Add parenchymal mottling (correlated over ~1.5 mm) scaled by `amplitude`, in place.

    The field is drawn on a grid 2x coarser in-plane (and in z for thin slices) and expanded by
    broadcasting; the later point-spread blur and the quantum noise hide the blocks, and it
    costs a fraction of a full-resolution field.
    """
    nz, ny, nx = level.shape
    fz = max(1, int(round(1.5 / spacing_xyz[2])))
    coarse = (-(-nz // fz), -(-ny // 2), -(-nx // 2))
    sigma = (1.5 / (fz * spacing_xyz[2]), 1.5 / (2 * spacing_xyz[1]), 1.5 / (2 * spacing_xyz[0]))
    field = _smooth_noise(rng, coarse, sigma)
    for z0 in range(0, nz, 16 * fz):  # in slabs, to keep the temporaries small
        z1 = min(nz, z0 + 16 * fz)
        block = field[z0 // fz:-(-z1 // fz)]
        block = np.repeat(block, fz, axis=0)[:z1 - z0] if fz > 1 else block
        full = np.repeat(np.repeat(block, 2, axis=1), 2, axis=2)[:, :ny, :nx]
        level[z0:z1] += amplitude[z0:z1] * full


def compose_hu(materials: np.ndarray, subslices: int, acq: Acquisition, rng: np.random.Generator,
               mean: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Materials on the sub-sliced grid -> HU on the acquisition grid (float32).

    Partial volume along z comes from averaging the sub-slices (the slice profile), in-plane
    from a Gaussian PSF; texture and quantum noise are correlated over ~1-2 mm like real CT.
    """
    nz, ny, nx = materials.shape
    shape = (nz // subslices, ny, nx)
    if subslices == 1:
        level, amplitude = mean[materials], texture[materials]
    else:
        level = mean[materials].reshape(shape[0], subslices, ny, nx).mean(axis=1)
        amplitude = texture[materials].reshape(shape[0], subslices, ny, nx).mean(axis=1)
    _add_texture(level, amplitude, rng, acq.spacing_xyz)
    del amplitude
    # Quantum noise is added before the PSF so that it inherits the scanner's correlation.
    sigma_px = acq.psf_fwhm_mm / 2.3548 / np.array(acq.spacing_xyz[:2])
    psf_zyx = (0.0, float(sigma_px[1]), float(sigma_px[0]))
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(acq.noise_hu / noise_gain(psf_zyx))
    level += noise
    del noise
    return gaussian_blur(level, psf_zyx)


# -------------------------------------------------------------------------------- orientation


def _to_image(array: np.ndarray, grid: Grid, acq: Acquisition) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in acq.spacing_xyz))
    image.SetDirection(tuple(float(v) for v in grid.direction.ravel()))
    image.SetOrigin(tuple(float(v) for v in grid.origin + acq.offset))
    return image


def reorient(image: sitk.Image, code: str) -> sitk.Image:
    """Store `image` with another axis order/sign (exact: a transpose/flip, content unchanged)."""
    return sitk.DICOMOrient(image, code)


# ---------------------------------------------------------------------------------- generate


def _label_tables(all_organs: bool) -> tuple[np.ndarray, dict[str, int]]:
    table = np.zeros(256, np.uint8)
    names = dict(ORGAN_LABELS) if all_organs else {"pancreas": 1}
    for index, material in enumerate(MATERIALS):
        if material.organ in names:
            table[index] = names[material.organ]
    return table, names


def _apply_variation(acq: Acquisition, anatomy: Anatomy, variation: Variation, fov_given: bool,
                     extent_given: bool) -> None:
    """Coverage cut through the gland, a cropped field of view and the noise level, in place.

    A z-range or field of view given by the caller is kept centred as the scanner model draws it.
    """
    if not extent_given:
        acq.centre[2] += variation.z_shift_mm
    acq.noise_hu *= variation.noise_scale
    if variation.crop_fov_mm is not None and not fov_given:
        # A field of view cropped around the pancreas (reconstructions of a region, or data sets
        # cut to the abdomen): the body runs off the image edges, as in TotalSegmentator s0009.
        head, tail = (np.array(anatomy.landmarks[k]) for k in ("pancreas_head", "pancreas_tail"))
        acq.centre[:2] = (head[:2] + tail[:2]) / 2 + np.array(variation.crop_offset_mm)
        n = min(MAX_MATRIX, int(math.ceil(variation.crop_fov_mm / acq.spacing_xyz[0])))
        acq.size_xyz = (n, n, acq.size_xyz[2])


def generate_case(seed: int, all_organs: bool = False, spacing_xyz: Optional[Sequence[float]] = None,
                  fov_mm: Optional[float] = None, z_extent_mm: Optional[float] = None,
                  orientation: Optional[str] = None, tilt_deg: Optional[float] = None,
                  phase: Optional[str] = None, vary: bool = True) -> PhantomCase:
    """Generate one phantom; the same `seed` (and arguments) always gives the same case.

    The anatomy depends on `seed` only; `spacing_xyz` (x, y, z mm), `fov_mm` (square in-plane
    field of view), `z_extent_mm`, `orientation` (a DICOMOrient code such as "LPS" or "RAS"),
    `tilt_deg` (gantry tilt) and `phase` ("portal_venous", "non_contrast", "arterial") override
    the random scanner settings without changing the patient. `vary=False` leaves out the
    per-case variation (phase, fatty gland, coverage, crop, noise, empty stomach): the phantom of
    before issue 12, voxel for voxel.
    """
    start = time.perf_counter()
    streams = np.random.SeedSequence(int(seed)).spawn(5)
    anatomy_rng, scanner_rng, intensity_rng, noise_rng, variation_rng = (np.random.default_rng(s) for s in streams)
    variation = sample_variation(variation_rng, phase) if vary else fixed_variation(phase)
    anatomy = build_anatomy(anatomy_rng, variation)
    extent = z_extent_mm if z_extent_mm is not None else variation.z_extent_mm
    acq = sample_acquisition(scanner_rng, anatomy, spacing_xyz, fov_mm, extent, orientation, tilt_deg)
    _apply_variation(acq, anatomy, variation, fov_given=fov_mm is not None, extent_given=z_extent_mm is not None)
    sub = subslices_for(acq.spacing_xyz[2])
    render_grid = _acquisition_grid(acq, sub)
    materials = render_materials(anatomy, render_grid)
    rendered = time.perf_counter()

    mean, texture = _material_tables(intensity_rng, variation.phase)
    hu = compose_hu(materials, sub, acq, noise_rng, mean, texture)
    ct = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    del hu
    centre = materials.reshape(-1, sub, *materials.shape[1:])[:, sub // 2]
    table, organ_labels = _label_tables(all_organs)
    labels = table[centre]
    pancreas = labels == ORGAN_LABELS["pancreas"]
    islands = 0
    if pancreas.any():
        # Detached lobules of noise-sculpted surface are not part of the annotated gland.
        islands_mask = pancreas & ~largest_component(pancreas)
        islands = int(np.count_nonzero(islands_mask))
        labels[islands_mask] = 0
    grid = _acquisition_grid(acq, 1)
    ct_image = reorient(_to_image(ct, grid, acq), acq.orientation)
    label_image = reorient(_to_image(labels, grid, acq), acq.orientation)
    voxel_ml = float(np.prod(acq.spacing_xyz)) / 1000.0
    metadata = {
        "seed": int(seed),
        "size_xyz": list(ct_image.GetSize()),
        "spacing_xyz": [round(float(v), 6) for v in ct_image.GetSpacing()],
        "pixel_spacing_mm": round(acq.spacing_xyz[0], 6),
        "slice_thickness_mm": acq.spacing_xyz[2],
        "field_of_view_mm": round(acq.size_xyz[0] * acq.spacing_xyz[0], 1),
        "orientation": acq.orientation,
        "gantry_tilt_deg": round(acq.tilt_deg, 2),
        "noise_hu": round(acq.noise_hu, 2),
        "phase": variation.phase,
        "variation": variation.as_dict(),
        "psf_fwhm_mm": round(acq.psf_fwhm_mm, 3),
        "subslices": sub,
        "patient_frame_offset_lps": [round(float(v), 3) for v in acq.offset],
        "pancreas_ml": round(float(np.count_nonzero(labels == 1)) * voxel_ml, 2),
        "pancreas_target_ml": round(anatomy.pancreas_target_ml, 2),
        "pancreas_islands_removed_ml": round(islands * voxel_ml, 3),
        # The scan starts or stops inside the gland (partial coverage): its label is cut.
        "pancreas_cut_by_scan": bool(pancreas[0].any() or pancreas[-1].any()),
        "hu_means": {m.name: round(float(mean[i]), 1) for i, m in enumerate(MATERIALS)},
        "landmarks_patient_frame": {k: [round(float(c), 2) for c in v] for k, v in anatomy.landmarks.items()},
        "seconds": {"render": round(rendered - start, 3), "total": round(time.perf_counter() - start, 3)},
    }
    return PhantomCase(ct=ct_image, labels=label_image, organ_labels=organ_labels, metadata=metadata)


# ----------------------------------------------------------------------------------- dataset


def case_seed(seed: int, index: int) -> int:
    """Seed of case `index` of a dataset made with `seed` (distinct datasets never share cases)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def phantom_case_name(index: int, cases: int) -> str:
    """File stem of case `index` in a dataset of `cases` (phantom_000, ...; wider for > 1000 cases)."""
    return f"{CASE_PREFIX}_{index:0{max(3, len(str(cases - 1)))}d}"


def _previous_dataset(out: Path) -> list[Path]:
    """Files that show `out` already holds a dataset (complete or interrupted)."""
    found = [out / "dataset.json"] if (out / "dataset.json").exists() else []
    for folder in ("imagesTr", "labelsTr"):
        if (out / folder).is_dir():
            found += sorted(p for p in (out / folder).iterdir() if not p.name.startswith("."))
    return found


def _check_output_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if not out.exists() and not out.parent.exists():
        raise InputError(out, f"cannot be created: folder '{out.parent}' does not exist")
    previous = _previous_dataset(out) if out.exists() else []
    if previous and not overwrite:
        raise InputError(out, f"already holds a dataset ({previous[0].relative_to(out)}, "
                              f"{len(previous)} file(s)); pass --overwrite to replace it")


def _write_json_atomic(data: dict, path: Path) -> None:
    from ..files.writing import atomic_output

    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def dataset_description(cases: int, seed: int, all_organs: bool, entries: list[dict], fast: bool,
                        vary: bool = True) -> dict:
    labels = {"0": "background"}
    names = ORGAN_LABELS if all_organs else {"pancreas": 1}
    labels.update({str(v): k for k, v in sorted(names.items(), key=lambda kv: kv[1])})
    return {
        "name": "AttentionUNetSegment synthetic pancreas phantoms",
        "description": "Synthetic abdominal CT phantoms (procedurally generated, not patient data) with "
                       "pancreas labels, made by `attention-unet-segment phantom`. Hounsfield units; "
                       "portal-venous, non-contrast or arterial phase per case (see generator.cases).",
        "reference": "AttentionUNetSegment phantom/generator.py",
        "licence": "CC0 (synthetic)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": labels,
        "numTraining": cases,
        "numTest": 0,
        "training": [{"image": e["image"], "label": e["label"]} for e in entries],
        "test": [],
        "synthetic": True,
        "generator": {"seed": int(seed), "all_organs": bool(all_organs), "fast": bool(fast), "variation": bool(vary),
                      "cases": [{"id": e["id"], "seed": e["seed"], **e["summary"]} for e in entries]},
    }


FAST_SETTINGS = {"spacing_xyz": (1.0, 1.0, 5.0), "z_extent_mm": 120.0}


def write_dataset(out_dir, cases: int, seed: int, all_organs: bool = False,
                  progress: Optional[Callable[[float, str], None]] = None, overwrite: bool = False,
                  fast: bool = False, log: Optional[Callable[[str], None]] = None, vary: bool = True) -> Path:
    """Write `cases` phantoms to `out_dir` in the Decathlon layout and return the folder.

    Refuses a folder that already holds a dataset unless `overwrite`. Every file is written to a
    temporary name and renamed, and dataset.json comes last, so an interrupted run never leaves
    a partial file and is recognisable (no dataset.json) as incomplete.
    """
    if cases < 1:
        raise InputError(out_dir, "--cases must be at least 1")
    out = Path(out_dir)
    _check_output_folder(out, overwrite)
    from ..files.writing import write_image

    stale = set(_previous_dataset(out)) if out.exists() else set()
    for folder in ("imagesTr", "labelsTr"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(cases):
        name, this_seed = phantom_case_name(index, cases), case_seed(seed, index)
        if progress:
            progress(index / cases, f"Phantom {index + 1}/{cases}")
        case = generate_case(this_seed, all_organs=all_organs, vary=vary, **(FAST_SETTINGS if fast else {}))
        image_path = out / "imagesTr" / f"{name}_0000.nii.gz"
        label_path = out / "labelsTr" / f"{name}.nii.gz"
        write_image(case.ct, image_path)
        write_image(case.labels, label_path)
        stale.discard(image_path)
        stale.discard(label_path)
        md = case.metadata
        summary = {k: md[k] for k in ("size_xyz", "spacing_xyz", "orientation", "gantry_tilt_deg",
                                      "noise_hu", "phase", "pancreas_ml")}
        entries.append({"id": name, "seed": this_seed, "image": f"./imagesTr/{image_path.name}",
                        "label": f"./labelsTr/{label_path.name}", "summary": summary})
        if log:
            size = "x".join(str(v) for v in md["size_xyz"])
            spacing = "x".join(f"{v:.2f}" for v in md["spacing_xyz"])
            log(f"{name}  seed {this_seed:>10}  {size:>13}  {spacing} mm  {md['orientation']}"
                f"{'  tilt %.1f deg' % md['gantry_tilt_deg'] if md['gantry_tilt_deg'] else ''}"
                f"  pancreas {md['pancreas_ml']:.1f} mL  {md['seconds']['total']:.1f} s")
    for path in sorted(stale):  # files of the replaced dataset that the new one does not have
        if path.is_file() and path.name != "dataset.json":
            path.unlink()
    _write_json_atomic(dataset_description(cases, seed, all_organs, entries, fast, vary), out / "dataset.json")
    if progress:
        progress(1.0, "Phantoms written")
    return out
