"""Training data of the click-conditioned model: any labelled structure, one at a time.

Class-agnostic: the network learns to segment *whatever structure the clicks point at*, so
every organ label of every scan teaches it (real CT texture and real organ edges from the
organ labels of real scans, every phantom organ), not only the pancreas. A source is a set of
CT/label pairs with the label values to leave out (a held-out structure, e.g. the real cases'
pancreas while it is being measured) and a share of the samples.

    source (files) --load_case (the inference preprocessing)--> StructureVolume (model grid)
      --sample_patch--> a patch centred near a point of one structure, and that structure's value

Arrays are (z, y, x) on the model grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from .data import Case, find_cases
from .loading import load_case

#: Structures smaller than this many model voxels (0.4 mL at 2 mm) are not used as targets.
MIN_STRUCTURE_VOXELS = 50
#: Interior points kept per structure to centre patches on (a random subset, for memory).
POINTS_PER_STRUCTURE = 4000


@dataclass
class StructureSource:
    """CT/label pairs whose labelled structures are training targets."""

    name: str
    cases: list[Case]
    share: float = 1.0  # of the samples, relative to the other sources
    held_out: frozenset = frozenset()  # label values never used (they become background)
    randomise: bool = False  # domain randomisation (synthetic data)

    @classmethod
    def from_folder(cls, name: str, folder, **kwargs) -> "StructureSource":
        return cls(name, find_cases(folder), **kwargs)

    @classmethod
    def from_pairs(cls, name: str, pairs: Sequence[tuple[str, str]], **kwargs) -> "StructureSource":
        cases = [Case(Path(image).parent.name or Path(image).stem, Path(image), Path(label))
                 for image, label in pairs]
        return cls(name, cases, **kwargs)


@dataclass
class StructureVolume:
    """One case on the model grid with its usable structures."""

    id: str
    source: str
    image: np.ndarray  # (z, y, x) float32, normalised
    labels: np.ndarray  # (z, y, x) uint8 label values (held-out ones set to 0)
    randomise: bool
    points: dict[int, np.ndarray] = field(default_factory=dict)  # value -> (n, 3) interior voxels


def _label_values(path: Path) -> list[int]:
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    values = np.unique(array)
    if values.max() > 255:
        raise InputError(path, "label values above 255 are not supported")
    return [int(v) for v in values if v > 0]


def _interior_points(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to POINTS_PER_STRUCTURE voxels of `mask`, preferring those off its surface."""
    eroded = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(mask.astype(np.uint8)), [1, 1, 1]))
    inner = np.argwhere(eroded > 0)
    points = inner if len(inner) >= 20 else np.argwhere(mask)
    if len(points) > POINTS_PER_STRUCTURE:
        points = points[rng.choice(len(points), POINTS_PER_STRUCTURE, replace=False)]
    return points.astype(np.int32)


def load_source(source: StructureSource, spacing_zyx, intensity, seed: int = 0,
                cache_dir=None) -> list[StructureVolume]:
    """Every case of `source` on the model grid, with interior points of each structure."""
    volumes = []
    rng = np.random.default_rng(seed)
    for case in source.cases:
        kept = [v for v in _label_values(case.label_path) if v not in source.held_out]
        loaded = load_case(case, spacing_zyx, intensity, {v: v for v in kept}, cache_dir)
        labels = np.ascontiguousarray(loaded.label)
        volume = StructureVolume(case.id, source.name, np.ascontiguousarray(loaded.image), labels, source.randomise)
        for value in kept:
            mask = labels == value
            if np.count_nonzero(mask) >= MIN_STRUCTURE_VOXELS:
                volume.points[value] = _interior_points(mask, rng)
        if volume.points:
            volumes.append(volume)
    return volumes


def crop(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill) -> np.ndarray:
    """array[start:start+size] with `fill` wherever the box leaves the array."""
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src = tuple(slice(max(s, 0), min(s + n, dim)) for s, n, dim in zip(start, size, array.shape))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start))
    if all(a.stop > a.start for a in src):
        out[dst] = array[src]
    return out


@dataclass
class Sample:
    image: np.ndarray  # (z, y, x) float32
    labels: np.ndarray  # (z, y, x) uint8: every structure of the patch (domain randomisation)
    target_value: int  # the structure the clicks point at
    randomise: bool


def sample_patch(volume: StructureVolume, patch_zyx: Sequence[int], rng: np.random.Generator,
                 air: float, value: Optional[int] = None, jitter: float = 0.25) -> Sample:
    """A patch centred near an interior point of one structure (`value`, else drawn uniformly
    among the case's structures), shifted by up to `jitter` of the patch along each axis."""
    if value is None:
        value = int(rng.choice(sorted(volume.points)))
    points = volume.points[value]
    centre = points[rng.integers(len(points))].astype(np.int64)
    shift = np.rint(rng.uniform(-jitter, jitter, 3) * np.asarray(patch_zyx)).astype(np.int64)
    start = centre + shift - np.asarray(patch_zyx) // 2
    return Sample(crop(volume.image, start, patch_zyx, np.float32(air)),
                  crop(volume.labels, start, patch_zyx, np.uint8(0)), value, volume.randomise)
