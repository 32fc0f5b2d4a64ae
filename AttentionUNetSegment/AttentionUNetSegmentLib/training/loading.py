"""Loading a training case onto the model grid, with the preprocessing inference uses.

Images go through `core.preprocessing.preprocess`, the very function inference uses, so the
network sees the same intensities and grid at training and at test time. Labels are resampled
onto that grid with nearest neighbour. Optionally the arrays are cached as memory-mapped .npy.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from .data import Case, apply_label_map, check_same_grid


@dataclass
class LoadedCase:
    """A case on the model grid. Arrays may be read-only memory maps from the cache."""

    id: str
    image: np.ndarray          # (z, y, x) float32, normalised intensities
    label: np.ndarray          # (z, y, x) uint8 class indices
    foreground: np.ndarray = field(init=False)   # (n,) int64 flat indices of the pancreas (1)

    def __post_init__(self) -> None:
        # Kept once per case: foreground oversampling draws from it every patch. Only the
        # pancreas (class 1): with organs trained as context (liver, stomach, ...) centring
        # on any label would centre most patches on the liver, the largest.
        self.foreground = np.flatnonzero(np.asarray(self.label).ravel() == 1)


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
