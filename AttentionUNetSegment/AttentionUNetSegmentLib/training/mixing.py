"""Several datasets in one training run: e.g. phantoms plus a folder of real CT/label pairs,
each with its own label map, drawn with given probabilities.

`train DATASET --extra-dataset DIR[:WEIGHT[:LABELS]]` (repeatable). WEIGHT is the share of
patches drawn from that dataset (0 < WEIGHT < 1); the main dataset, and extra datasets given
without a weight, share what is left in proportion to their number of training cases. Without
any weight every training case is equally likely, wherever it comes from. LABELS is that
dataset's label map (`--labels` syntax, e.g. `7:1` for TotalSegmentator's pancreas); without
it, the main dataset's `--labels` applies.

Validation cases come from the main dataset only; every case of an extra dataset is trained on,
and the model file lists them all (`training.trained_on`), so a leave-one-out report can show
which cases a model never saw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.errors import InputError
from .data import parse_label_map, read_dataset_json


@dataclass(frozen=True)
class DatasetSource:
    """One dataset of a run: where, which label map, what share of the patches."""

    path: str
    labels: str                 # label map text: "merge" or "7:1,..."
    weight: float | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "labels": self.labels, "weight": self.weight}

    @property
    def name(self) -> str:
        """dataset.json's name, else the folder's name."""
        return str(read_dataset_json(self.path).get("name") or Path(self.path).name)


def parse_extra_dataset(text: str) -> dict:
    """`DIR[:WEIGHT[:LABELS]]` -> {"path", "weight", "labels"} (plain types for the config)."""
    path, _, rest = text.partition(":")
    weight_text, _, labels = rest.partition(":")
    if not path:
        raise InputError(None, f"--extra-dataset {text!r}: expected DIR[:WEIGHT[:LABELS]]")
    weight = None
    if weight_text:
        try:
            weight = float(weight_text)
        except ValueError:
            raise InputError(None, f"--extra-dataset {text!r}: weight {weight_text!r} is not a "
                                   "number (expected DIR[:WEIGHT[:LABELS]])") from None
        if not 0.0 < weight < 1.0:
            raise InputError(None, f"--extra-dataset {text!r}: the weight is a share of the "
                                   "patches, strictly between 0 and 1")
    if labels:
        parse_label_map(labels)       # a clear error now, not after preprocessing
    return {"path": str(Path(path).expanduser().resolve()), "weight": weight,
            "labels": labels or None}


def dataset_sources(main_dir: str | os.PathLike, main_labels: str,
                    extras: Sequence[dict]) -> list[DatasetSource]:
    """The main dataset first, then the extra ones (their labels default to the main's)."""
    sources = [DatasetSource(str(Path(main_dir)), main_labels, None)]
    for extra in extras:
        sources.append(DatasetSource(str(extra["path"]), extra.get("labels") or main_labels,
                                     extra.get("weight")))
    total = sum(source.weight or 0.0 for source in sources)
    if total >= 1.0:
        raise InputError(None, f"--extra-dataset weights add up to {total:g}; they are shares of "
                               "the patches and must leave some for the main dataset (< 1)")
    return sources


def case_probabilities(case_counts: Sequence[int], weights: Sequence[float | None]) -> list[float]:
    """Per-case draw probabilities for datasets with `case_counts` training cases each: a
    weighted dataset gets its weight spread over its cases; the unweighted ones share the rest
    in proportion to their case counts (every case of theirs equally likely)."""
    fixed = sum(w for w in weights if w is not None)
    unweighted_cases = sum(n for n, w in zip(case_counts, weights) if w is None)
    probabilities = []
    for n, weight in zip(case_counts, weights):
        if weight is None:
            share = (1.0 - fixed) * n / unweighted_cases if unweighted_cases else 0.0
        else:
            share = weight
        probabilities.extend([share / n] * n if n else [])
    total = sum(probabilities)
    return [p / total for p in probabilities]
