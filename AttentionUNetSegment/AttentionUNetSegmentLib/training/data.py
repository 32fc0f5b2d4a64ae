"""Training data: dataset discovery, label mapping, patch sampling and augmentation.

Layouts `find_cases` accepts (checked in this order):

1. Medical Segmentation Decathlon (e.g. Task07_Pancreas): `dataset.json` beside `imagesTr/`
   and `labelsTr/`. The "training" list of dataset.json is used when present; otherwise (as
   in nnU-Net v2 raw datasets) images and labels are paired by name. Image names may carry
   the nnU-Net channel suffix `_0000`. macOS `._*` files in the Decathlon archives are ignored.
2. Two folders of pairs: `imagesTr/` + `labelsTr/` or `images/` + `labels/`. A label belongs
   to the image with the same name (after removing `_0000`), or, when names differ, with
   the same case number (NIH Pancreas-CT converted to NIfTI: `PANCREAS_0001.nii.gz` <->
   `label0001.nii.gz`).
3. One flat folder of `<case>_ct.<ext>` / `<case>_image.<ext>` next to
   `<case>_label.<ext>` / `<case>_seg.<ext>`.

Extensions: `.nii.gz`, `.nii`, `.nrrd`, `.nhdr`, `.mha`, `.mhd`. Every label must lie on its
image's voxel grid (size, spacing, origin, direction); otherwise a one-line InputError names
the pair, before any training starts.

Images go through `preprocessing.preprocess`, the very function inference uses, so the
network sees the same intensities and grid at training and at test time. Labels are resampled
onto that grid with nearest neighbour.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from ..core.errors import InputError
from ..core.geometry import grid_differences

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_CHANNEL_SUFFIX = re.compile(r"_(\d{4})$")          # nnU-Net: case_0000 = channel 0
_FLAT_IMAGE = re.compile(r"^(?P<case>.+?)[_-](ct|image|img)$", re.IGNORECASE)
_FLAT_LABEL = re.compile(r"^(?P<case>.+?)[_-](label|labels|seg|segmentation|mask)$",
                         re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    """One training pair on disk."""

    id: str
    image_path: Path
    label_path: Path


# ---------------------------------------------------------------------------------------------
# Discovery


def _strip_extension(name: str) -> str | None:
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return None


def _volume_files(folder: Path) -> dict[str, Path]:
    """stem -> path for the image files of a folder (hidden and `._` macOS files skipped)."""
    files = {}
    for path in sorted(folder.iterdir()):
        stem = _strip_extension(path.name)
        if stem is None or path.name.startswith(".") or not path.is_file():
            continue
        files[stem] = path
    return files


def _case_number(stem: str) -> int | None:
    numbers = re.findall(r"\d+", stem)
    return int(numbers[-1]) if numbers else None


def _pair_folders(images_dir: Path, labels_dir: Path) -> list[Case]:
    images = _volume_files(images_dir)
    labels = _volume_files(labels_dir)
    # nnU-Net names images case_0000 (channel 0); CT is one channel, so any other channel
    # means a multi-modal dataset this network cannot read.
    by_id: dict[str, Path] = {}
    for stem, path in images.items():
        match = _CHANNEL_SUFFIX.search(stem)
        if match and match.group(1) != "0000" and stem[: match.start()] + "_0000" in images:
            raise InputError(path, "multi-channel case; the network takes one CT channel")
        case_id = stem[: match.start()] if match and match.group(1) == "0000" else stem
        by_id[case_id] = path
    if not by_id:
        return []
    if set(by_id) == set(labels):
        return [Case(cid, by_id[cid], labels[cid]) for cid in sorted(by_id)]

    # Names differ: pair by case number (NIH Pancreas-CT: PANCREAS_0001 <-> label0001).
    image_numbers = {_case_number(cid): cid for cid in by_id}
    label_numbers = {_case_number(stem): stem for stem in labels}
    unique = (None not in image_numbers and None not in label_numbers
              and len(image_numbers) == len(by_id) and len(label_numbers) == len(labels))
    if unique and set(image_numbers) == set(label_numbers):
        return [Case(image_numbers[n], by_id[image_numbers[n]], labels[label_numbers[n]])
                for n in sorted(image_numbers)]

    missing = sorted(set(by_id) - set(labels))
    extra = sorted(set(labels) - set(by_id))
    detail = []
    if missing:
        detail.append(f"{len(missing)} image(s) without a label ({', '.join(missing[:3])})")
    if extra:
        detail.append(f"{len(extra)} label(s) without an image ({', '.join(extra[:3])})")
    raise InputError(labels_dir, "images and labels do not pair up: " + "; ".join(detail))


def _decathlon_cases(root: Path, description: dict) -> list[Case]:
    entries = description.get("training") or []
    if not entries:      # nnU-Net v2 dataset.json has no file list: pair the folders
        return _pair_folders(root / "imagesTr", root / "labelsTr")
    cases = []
    for entry in entries:
        image = root / entry["image"]
        label = root / entry["label"]
        if not image.exists():       # converted to nnU-Net naming: case_0000.nii.gz
            stem = _strip_extension(image.name) or image.stem
            image = image.with_name(stem + "_0000" + image.name[len(stem):])
        for path in (image, label):
            if not path.exists():
                raise InputError(path, "listed in dataset.json but missing")
        cases.append(Case(_strip_extension(label.name) or label.stem, image, label))
    return cases


def _flat_cases(root: Path) -> list[Case]:
    images, labels = {}, {}
    for stem, path in _volume_files(root).items():
        if match := _FLAT_IMAGE.match(stem):
            images[match.group("case")] = path
        elif match := _FLAT_LABEL.match(stem):
            labels[match.group("case")] = path
    missing = sorted(set(images) ^ set(labels))
    if missing:
        raise InputError(root, f"unpaired files for case(s) {', '.join(missing[:3])}: "
                               "expected <case>_ct and <case>_label")
    return [Case(cid, images[cid], labels[cid]) for cid in sorted(images)]


def read_dataset_json(dataset_dir: str | os.PathLike) -> dict:
    """dataset.json of a Decathlon-style dataset, or {} when there is none."""
    path = Path(dataset_dir) / "dataset.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(path, f"unreadable dataset.json ({error})") from None


def is_synthetic_dataset(dataset_dir: str | os.PathLike) -> bool:
    """True when dataset.json says the data are synthetic (our phantoms say so)."""
    description = read_dataset_json(dataset_dir)
    if isinstance(description.get("synthetic"), bool):
        return description["synthetic"]
    text = " ".join(str(description.get(key, "")) for key in ("name", "description"))
    return bool(re.search(r"synthetic|phantom", text, re.IGNORECASE))


_PANCREATIC = re.compile(r"^(background|pancreas|pancreatic.*|tumou?r|cancer|lesion|neoplasm|"
                         r"cyst)$", re.IGNORECASE)


def check_merge_is_safe(dataset_dir: str | os.PathLike) -> None:
    """`--labels merge` turns every label into pancreas: right for Task07 (pancreas +
    tumour) and NIH, wrong for a multi-organ dataset. Refuse when dataset.json names others."""
    labels = read_dataset_json(dataset_dir).get("labels") or {}
    if not isinstance(labels, dict):
        return
    # Decathlon: {"1": "pancreas"}; nnU-Net v2: {"pancreas": 1}.
    pairs = [(str(k), str(v)) if str(k).isdigit() else (str(v), str(k)) for k, v in labels.items()]
    others = sorted(f"{value} ({name})" for value, name in pairs if not _PANCREATIC.match(name))
    if others:
        pancreas = [value for value, name in pairs if name.lower() == "pancreas"]
        hint = f" such as --labels {pancreas[0]}:1" if pancreas else ""
        raise InputError(Path(dataset_dir) / "dataset.json",
                         f"labels {', '.join(others[:4])}{', ...' if len(others) > 4 else ''} "
                         f"are not pancreas; --labels merge would train them as pancreas: "
                         f"give a label map{hint}")


def _read_header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(path, "cannot read the image header") from None
    return reader


#: Label-vs-image header tolerances for training data: looser than evaluation's, because public
#: datasets' labels were often written by another tool that rounds the origin differently
#: (up to a few hundredths of a voxel); a real mismatch is a whole voxel or more.
LABEL_GRID_TOLERANCES = {"spacing_rtol": 1e-3, "origin_tol_voxels": 0.05, "direction_tol": 1e-3}


def check_same_grid(image, label, label_path: Path, image_name: str) -> None:
    """InputError unless `label` (image or header reader) lies on `image`'s voxel grid."""
    differences = grid_differences(label, image, **LABEL_GRID_TOLERANCES)
    if differences:
        raise InputError(label_path, f"not on the grid of {image_name} (label vs image): "
                                     + "; ".join(differences))


def find_cases(dataset_dir: str | os.PathLike, check_grids: bool = True) -> list[Case]:
    """Training pairs of a dataset folder (see the module docstring for the layouts)."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    if (root / "dataset.json").exists() and (root / "imagesTr").is_dir():
        cases = _decathlon_cases(root, read_dataset_json(root))
    elif (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
        cases = _pair_folders(root / "imagesTr", root / "labelsTr")
    elif (root / "images").is_dir() and (root / "labels").is_dir():
        cases = _pair_folders(root / "images", root / "labels")
    else:
        cases = _flat_cases(root)
    if not cases:
        raise InputError(root, "no training cases found: expected a Decathlon folder "
                               "(dataset.json, imagesTr/, labelsTr/), images/ + labels/, "
                               "or <case>_ct.nii.gz + <case>_label.nii.gz pairs")
    if len({case.id for case in cases}) != len(cases):
        raise InputError(root, "two cases share one name")
    if check_grids:
        for case in cases:
            check_same_grid(_read_header(case.image_path), _read_header(case.label_path),
                            case.label_path, case.image_path.name)
    return sorted(cases, key=lambda case: case.id)


# ---------------------------------------------------------------------------------------------
# Labels


def parse_label_map(text: str | None) -> dict[int, int] | None:
    """`"merge"` (or None) -> None: every label > 0 becomes 1 (Task07 tumour into pancreas).
    `"1:1,2:1"` -> {1: 1, 2: 1}: source value -> class; unlisted values become background.
    """
    if text is None or text.strip().lower() == "merge":
        return None
    mapping = {}
    try:
        for item in text.split(","):
            source, target = item.split(":")
            mapping[int(source)] = int(target)
    except ValueError:
        raise InputError(None, f"--labels {text!r}: expected 'merge' or "
                               "'SOURCE:CLASS,...' such as '1:1,2:1'") from None
    classes = sorted(set(mapping.values()) - {0})
    if any(value < 0 for value in mapping) or classes != list(range(1, len(classes) + 1)):
        raise InputError(None, f"--labels {text!r}: classes must be 1..K with no gaps")
    return mapping


def num_classes(label_map: dict[int, int] | None) -> int:
    """Network output channels, background included."""
    return 2 if label_map is None else max(label_map.values()) + 1


def apply_label_map(label: np.ndarray, label_map: dict[int, int] | None) -> np.ndarray:
    label = np.rint(label).astype(np.int64)
    if label_map is None:
        return (label > 0).astype(np.uint8)
    out = np.zeros(label.shape, np.uint8)
    for source, target in label_map.items():
        out[label == source] = target
    return out


# ---------------------------------------------------------------------------------------------
# Loading (the same preprocessing as inference)


@dataclass
class LoadedCase:
    """A case on the model grid. Arrays may be read-only memory maps from the cache."""

    id: str
    image: np.ndarray          # (z, y, x) float32, normalised intensities
    label: np.ndarray          # (z, y, x) uint8 class indices
    foreground: np.ndarray = field(init=False)   # (n,) int64 flat indices of label > 0

    def __post_init__(self) -> None:
        # Kept once per case: foreground oversampling draws from it every patch.
        self.foreground = np.flatnonzero(np.asarray(self.label).ravel() > 0)


def background_value(intensity) -> float:
    """The normalised value of air: what padding outside the volume looks like."""
    from ..core.preprocessing import AIR_HU, normalize_hu
    return float(normalize_hu(np.array([AIR_HU], np.float32), intensity)[0])


def _cache_key(case: Case, spacing_zyx, intensity, label_map) -> str:
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
             for p in (case.image_path, case.label_path)]
    key = {"files": stats, "spacing": list(spacing_zyx), "intensity": asdict(intensity),
           "labels": None if label_map is None else sorted(label_map.items()), "version": 1}
    return hashlib.sha1(json.dumps(key, default=str).encode()).hexdigest()[:12]


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_case(case: Case, spacing_zyx: Sequence[float], intensity,
              label_map: dict[int, int] | None = None,
              cache_dir: str | os.PathLike | None = None) -> LoadedCase:
    """Preprocess a case exactly like inference does, with its label on the same grid.

    With `cache_dir`, the arrays are kept there as .npy (named by a hash of the files and
    settings, so a change of spacing or data never reuses a stale cache) and memory-mapped,
    which lets the processes of a multi-GPU run share one copy through the page cache.
    """
    if cache_dir is not None:
        cache = Path(cache_dir)
        stem = f"{case.id}-{_cache_key(case, spacing_zyx, intensity, label_map)}"
        image_npy, label_npy = cache / f"{stem}.image.npy", cache / f"{stem}.label.npy"
        if image_npy.exists() and label_npy.exists():
            return LoadedCase(case.id, np.load(image_npy, mmap_mode="r"),
                              np.load(label_npy, mmap_mode="r"))

    from ..core.preprocessing import preprocess
    from ..files.reading import read_ct

    image = read_ct(case.image_path)
    volume = preprocess(image, tuple(spacing_zyx), intensity)
    try:
        label = sitk.ReadImage(str(case.label_path))
    except RuntimeError:
        raise InputError(case.label_path, "cannot read the label image") from None
    check_same_grid(image, label, case.label_path, case.image_path.name)
    mapped = sitk.GetImageFromArray(apply_label_map(sitk.GetArrayFromImage(label), label_map))
    mapped.CopyInformation(label)
    # Nearest neighbour keeps class indices; the grid is the one the image was resampled to.
    on_grid = sitk.Resample(mapped, volume.grid, sitk.Transform(), sitk.sitkNearestNeighbor,
                            0, sitk.sitkUInt8)
    loaded = LoadedCase(case.id, volume.array.astype(np.float32, copy=False),
                        sitk.GetArrayFromImage(on_grid).astype(np.uint8, copy=False))
    if loaded.image.shape != loaded.label.shape:    # defensive: grid and array must agree
        raise InputError(case.label_path, "label and preprocessed image differ in shape")
    if cache_dir is not None:
        cache.mkdir(parents=True, exist_ok=True)
        _save_npy_atomic(image_npy, loaded.image)
        _save_npy_atomic(label_npy, loaded.label)
    return loaded


# ---------------------------------------------------------------------------------------------
# Patch sampling


class PatchSampler:
    """Random patches, some centred on foreground (nnU-Net style oversampling).

    The pancreas fills well under 1 % of an abdominal CT, so uniformly placed patches would
    rarely contain it; with probability `foreground_probability` the patch is centred on a
    random foreground voxel instead (then shifted to stay inside the volume where possible).
    Parts of a patch outside the volume get `pad_value` (air after normalisation) and label 0,
    which is also what sliding-window inference pads with.
    """

    def __init__(self, patch_size_zyx: Sequence[int], foreground_probability: float = 0.33,
                 pad_value: float = 0.0):
        self.patch_size_zyx = tuple(int(s) for s in patch_size_zyx)
        self.foreground_probability = float(foreground_probability)
        self.pad_value = float(pad_value)

    def _corner(self, shape, rng: np.random.Generator, centre=None) -> list[int]:
        corner = []
        for axis, (size, patch) in enumerate(zip(shape, self.patch_size_zyx)):
            # Volume larger than the patch: the patch lies inside it. Smaller: the whole
            # volume lies inside the patch. Clamping a foreground-centred patch into that
            # range keeps its centre voxel inside the patch in both cases.
            low, high = min(0, size - patch), max(0, size - patch)
            if centre is None:
                corner.append(int(rng.integers(low, high + 1)))
            else:
                corner.append(min(max(int(centre[axis]) - patch // 2, low), high))
        return corner

    def crop(self, array: np.ndarray, corner: Sequence[int], fill: float) -> np.ndarray:
        """patch_size_zyx block starting at `corner` (may lie partly outside), padded."""
        out = np.full(self.patch_size_zyx, fill, dtype=array.dtype)
        src, dst = [], []
        for start, patch, size in zip(corner, self.patch_size_zyx, array.shape):
            lo, hi = max(start, 0), min(start + patch, size)
            if hi <= lo:
                return out
            src.append(slice(lo, hi))
            dst.append(slice(lo - start, hi - start))
        out[tuple(dst)] = array[tuple(src)]
        return out

    def sample(self, case: LoadedCase, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, bool]:
        """-> (image (z, y, x) float32, label (z, y, x) uint8, centred on foreground?)"""
        forced = (rng.random() < self.foreground_probability) and case.foreground.size > 0
        centre = None
        if forced:
            flat = case.foreground[rng.integers(case.foreground.size)]
            centre = np.unravel_index(flat, case.label.shape)
        corner = self._corner(case.image.shape, rng, centre)
        image = self.crop(case.image, corner, self.pad_value).astype(np.float32, copy=False)
        label = self.crop(case.label, corner, 0).astype(np.uint8, copy=False)
        return image, label, bool(forced)


class PatchDataset(IterableDataset):
    """`samples_per_epoch` patches per epoch and rank: (image (1, z, y, x) float32,
    label (z, y, x) int64).

    Every sample has its own generator seeded by (seed, rank, epoch, index), so the stream
    is the same whatever the number of DataLoader workers, differs between ranks (the DDP
    sharding: each rank sees other patches), and an epoch can be replayed exactly after
    `--resume`. Workers take whole batches in turn (worker w: batches w, w + W, ...) so that
    the DataLoader, which round-robins over workers, delivers batches in index order.
    """

    def __init__(self, cases: Sequence[LoadedCase], sampler: PatchSampler,
                 samples_per_epoch: int, batch_size: int = 1, seed: int = 0, rank: int = 0):
        if not cases:
            raise ValueError("PatchDataset needs at least one case")
        self.cases = list(cases)
        self.sampler = sampler
        self.samples_per_epoch = int(samples_per_epoch)
        self.batch_size = max(1, int(batch_size))
        self.seed, self.rank, self.epoch = int(seed), int(rank), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, self.epoch, int(index)])
        case = self.cases[int(rng.integers(len(self.cases)))]
        image, label, _ = self.sampler.sample(case, rng)
        return torch.from_numpy(image[None]), torch.from_numpy(label.astype(np.int64))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        n_batches = math.ceil(self.samples_per_epoch / self.batch_size)
        for batch in range(worker, n_batches, workers):
            start = batch * self.batch_size
            for index in range(start, min(start + self.batch_size, self.samples_per_epoch)):
                yield self.sample(index)


# ---------------------------------------------------------------------------------------------
# Augmentation (torch, on the batch, on whatever device the batch lives: CPU or GPU)


@dataclass
class AugmentationConfig:
    """Probabilities are per sample. The ranges follow the official training config
    (rotation 15 degrees, scale 0.7-1.3) and nnU-Net's intensity augmentations."""

    enabled: bool = True
    affine_probability: float = 0.5
    rotation_z_deg: float = 15.0        # about the z (cranio-caudal) axis: in-plane rotation
    rotation_other_deg: float = 5.0     # about y and x: patients lie flat, so small
    scale_range: tuple[float, float] = (0.7, 1.3)   # > 1 magnifies
    # The official code used flips, but the pancreas is not left-right symmetric and the
    # volumes are in a canonical (LPS) orientation: a flipped patch shows an anatomy (pancreas
    # tail on the patient's right) that never occurs, which wastes capacity and weakens the
    # positional prior. So flips are off by default; name axes ("x", "y", "z") to enable.
    flip_axes: tuple[str, ...] = ()
    flip_probability: float = 0.5
    intensity_probability: float = 0.3  # each of brightness, contrast, gamma, noise
    brightness: float = 0.1             # additive, normalised units (0.1 = 10 HU with std 100)
    contrast_range: tuple[float, float] = (0.75, 1.25)
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.05             # maximum standard deviation, normalised units


def _uniform(low: float, high: float, n: int, generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _rotation_zyx(angles: torch.Tensor) -> torch.Tensor:
    """(n, 3) angles (about z, y, x) in radians -> (n, 3, 3) rotations in (z, y, x) coords."""
    n = angles.shape[0]
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones(n, device=angles.device), torch.zeros(n, device=angles.device)

    def matrix(rows):   # rows of (n,) tensors -> (n, 3, 3)
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    # About z: mixes y and x; about y: mixes z and x; about x: mixes z and y.
    rz = matrix([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = matrix([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rx = matrix([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def affine_transform(image: torch.Tensor, label: torch.Tensor, matrix_zyx: torch.Tensor,
                     pad_value: float, voxel_size_zyx: Sequence[float] = (1.0, 1.0, 1.0)
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample patches about their centre.

    image (n, 1, z, y, x), label (n, z, y, x) long, matrix_zyx (n, 3, 3) maps output
    positions (physical, relative to the centre) to input positions.
    """
    n, _, *size = image.shape
    # affine_grid works in normalised coordinates [-1, 1] per axis; a rotation is only a
    # rotation in physical units, so conjugate with the half extents of the patch.
    half = torch.tensor([s * v / 2.0 for s, v in zip(size, voxel_size_zyx)],
                        dtype=matrix_zyx.dtype, device=matrix_zyx.device)
    normalised = matrix_zyx * half[None, None, :] / half[None, :, None]   # H^-1 A H
    theta = torch.zeros(n, 3, 4, dtype=image.dtype, device=image.device)
    theta[:, :, :3] = normalised.flip(-1).flip(-2)    # grid coordinates are (x, y, z)
    grid = F.affine_grid(theta, [n, 1, *size], align_corners=False)
    # grid_sample pads with 0; shift so the padding is air, as for out-of-volume patches.
    image = F.grid_sample(image - pad_value, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False) + pad_value
    label = F.grid_sample(label[:, None].to(image.dtype), grid, mode="nearest",
                          padding_mode="zeros", align_corners=False)[:, 0].round().long()
    return image, label


def augment_batch(image: torch.Tensor, label: torch.Tensor, config: AugmentationConfig,
                  generator: torch.Generator, pad_value: float = 0.0,
                  voxel_size_zyx: Sequence[float] = (1.0, 1.0, 1.0)
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random spatial + intensity augmentation of a batch, image and label kept aligned.

    image (B, 1, z, y, x) float, label (B, z, y, x) long; `generator` lives on the batch's
    device, which makes the result a function of its seed on CPU and on CUDA.
    """
    if not config.enabled:
        return image, label
    image, label = image.clone(), label.clone()
    b, device = image.shape[0], image.device

    def chosen(p: float) -> torch.Tensor:
        return torch.nonzero(torch.rand(b, generator=generator, device=device) < p)[:, 0]

    # Spatial: rotation and scaling in one resampling (one interpolation, not two).
    idx = chosen(config.affine_probability)
    if idx.numel():
        n = idx.numel()
        limits = torch.tensor([config.rotation_z_deg, config.rotation_other_deg,
                               config.rotation_other_deg], device=device)
        angles = (torch.rand(n, 3, generator=generator, device=device) * 2 - 1) \
            * torch.deg2rad(limits)
        scale = _uniform(*config.scale_range, n, generator, device)
        matrix = _rotation_zyx(angles) / scale[:, None, None]   # output -> input positions
        image[idx], label[idx] = affine_transform(image[idx], label[idx], matrix.float(),
                                                  pad_value, voxel_size_zyx)

    for axis_name in config.flip_axes:
        axis = {"z": 0, "y": 1, "x": 2}[axis_name]
        idx = chosen(config.flip_probability)
        if idx.numel():
            image[idx] = image[idx].flip(axis + 2)
            label[idx] = label[idx].flip(axis + 1)

    # Intensity (image only): scanner and contrast-phase variation.
    p = config.intensity_probability
    idx = chosen(p)
    if idx.numel():
        image[idx] += _uniform(-config.brightness, config.brightness, idx.numel(), generator,
                               device).view(-1, 1, 1, 1, 1)
    idx = chosen(p)
    if idx.numel():
        factor = _uniform(*config.contrast_range, idx.numel(), generator, device)
        mean = image[idx].mean(dim=(1, 2, 3, 4), keepdim=True)
        image[idx] = (image[idx] - mean) * factor.view(-1, 1, 1, 1, 1) + mean
    idx = chosen(p)
    if idx.numel():
        # Gamma needs non-negative values: map each patch to [0, 1] and back.
        gamma = _uniform(*config.gamma_range, idx.numel(), generator, device)
        patch = image[idx]
        low = patch.amin(dim=(1, 2, 3, 4), keepdim=True)
        span = (patch.amax(dim=(1, 2, 3, 4), keepdim=True) - low).clamp_min(1e-6)
        image[idx] = ((patch - low) / span) ** gamma.view(-1, 1, 1, 1, 1) * span + low
    idx = chosen(p)
    if idx.numel():
        std = _uniform(0.0, config.noise_std, idx.numel(), generator, device)
        noise = torch.randn(image[idx].shape, generator=generator, device=device)
        image[idx] += noise * std.view(-1, 1, 1, 1, 1)
    return image, label
