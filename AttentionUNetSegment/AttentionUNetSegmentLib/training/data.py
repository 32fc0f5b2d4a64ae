"""Training data on disk: dataset discovery, label maps.

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
the pair, before any training starts. Loading onto the model grid is `loading.py`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.geometry import grid_differences
from ..core.labels import parse_label_map  # noqa: F401 - the one label syntax; importable here too
from ..files.formats import INPUT_EXTENSIONS

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
    for ext in INPUT_EXTENSIONS:
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
        return json.loads(path.read_text(encoding="utf-8"))
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


def split_cases(cases: list[Case], val_fraction: float, val_ids: Sequence[str],
                seed: int) -> tuple[list[Case], list[Case]]:
    """(train, validation): explicit ids, else a seeded random `val_fraction` (at least one
    validation case when the fraction is > 0 and there are two cases or more)."""
    by_id = {case.id: case for case in cases}
    if val_ids:
        unknown = [cid for cid in val_ids if cid not in by_id]
        if unknown:
            raise InputError(None, f"validation case(s) not in the dataset: {', '.join(unknown)}")
        val = [by_id[cid] for cid in val_ids]
    else:
        n_val = 0
        if val_fraction > 0 and len(cases) >= 2:
            n_val = min(len(cases) - 1, max(1, round(val_fraction * len(cases))))
        order = np.random.default_rng(seed).permutation(len(cases))
        val = sorted((cases[i] for i in order[:n_val]), key=lambda case: case.id)
    val_set = {case.id for case in val}
    train_cases = [case for case in cases if case.id not in val_set]
    if not train_cases:
        raise InputError(None, "no training cases left after the validation split")
    return train_cases, val

