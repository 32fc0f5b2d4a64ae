"""Patch sampling: foreground-oversampled random patches and the per-epoch patch stream."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .loading import LoadedCase


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

    `case_probabilities` (one per case, summing to 1) mixes datasets: e.g. phantoms and real
    scans drawn with given shares (`mixing.case_probabilities`); None draws cases uniformly.
    """

    def __init__(self, cases: Sequence[LoadedCase], sampler: PatchSampler,
                 samples_per_epoch: int, batch_size: int = 1, seed: int = 0, rank: int = 0,
                 case_probabilities: Sequence[float] | None = None):
        if not cases:
            raise ValueError("PatchDataset needs at least one case")
        if case_probabilities is not None:
            probabilities = np.asarray(case_probabilities, dtype=np.float64)
            if probabilities.shape != (len(cases),) or probabilities.min() < 0 or \
                    not np.isclose(probabilities.sum(), 1.0):
                raise ValueError("case_probabilities: one non-negative value per case, sum 1")
            case_probabilities = probabilities / probabilities.sum()
        self.case_probabilities = case_probabilities
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
        if self.case_probabilities is None:
            case = self.cases[int(rng.integers(len(self.cases)))]
        else:
            case = self.cases[int(rng.choice(len(self.cases), p=self.case_probabilities))]
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
