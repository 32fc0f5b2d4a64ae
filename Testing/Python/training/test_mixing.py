"""Mixing datasets: the --extra-dataset syntax, patch shares per dataset, and the sampler drawing
cases with those shares."""

from __future__ import annotations

import numpy as np
import pytest
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.training.loading import LoadedCase
from AttentionUNetSegmentLib.training.mixing import (
    case_probabilities,
    dataset_sources,
    parse_extra_dataset,
)
from AttentionUNetSegmentLib.training.sampling import PatchDataset, PatchSampler


def test_extra_dataset_syntax(tmp_path):
    parsed = parse_extra_dataset(f"{tmp_path}:0.3:7:1")
    assert parsed == {"path": str(tmp_path.resolve()), "weight": 0.3, "labels": "7:1"}
    assert parse_extra_dataset(str(tmp_path)) == {"path": str(tmp_path.resolve()),
                                                  "weight": None, "labels": None}
    assert parse_extra_dataset(f"{tmp_path}::1:1,2:1")["labels"] == "1:1,2:1"
    with pytest.raises(InputError, match="not a number"):
        parse_extra_dataset(f"{tmp_path}:lots")
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        parse_extra_dataset(f"{tmp_path}:1.5")
    with pytest.raises(InputError, match="classes must be 1..K"):
        parse_extra_dataset(f"{tmp_path}:0.5:7:2")


def test_sources_default_to_the_main_label_map_and_weights_leave_room(tmp_path):
    extras = [{"path": "a", "weight": 0.4, "labels": "7:1"}, {"path": "b", "weight": None,
                                                               "labels": None}]
    sources = dataset_sources(tmp_path, "merge", extras)
    assert [s.labels for s in sources] == ["merge", "7:1", "merge"]
    assert [s.weight for s in sources] == [None, 0.4, None]
    with pytest.raises(InputError, match="add up to 1.1"):
        dataset_sources(tmp_path, "merge", [{"path": "a", "weight": 0.6},
                                            {"path": "b", "weight": 0.5}])


def test_case_probabilities():
    # Weighted dataset: its share spread over its cases; the rest by case counts.
    p = case_probabilities([3, 2], [None, 0.4])
    assert p == pytest.approx([0.2, 0.2, 0.2, 0.2, 0.2])
    p = case_probabilities([4, 1], [None, 0.5])
    assert p == pytest.approx([0.125] * 4 + [0.5])
    p = case_probabilities([6, 2, 2], [None, 0.25, None])     # 0.75 over 8 unweighted cases
    assert p == pytest.approx([0.09375] * 6 + [0.125] * 2 + [0.09375] * 2)
    assert sum(case_probabilities([4, 2], [None, None])) == pytest.approx(1.0)


def _case(value: int) -> LoadedCase:
    label = np.zeros((8, 8, 8), np.uint8)
    return LoadedCase(f"case{value}", np.full((8, 8, 8), float(value), np.float32), label)


def test_patch_stream_draws_cases_with_the_given_shares():
    cases = [_case(0), _case(1), _case(2), _case(3)]
    probabilities = case_probabilities([3, 1], [None, 0.6])     # case3 is 60 % of patches
    dataset = PatchDataset(cases, PatchSampler((8, 8, 8), 0.0), 2000, 4, seed=0,
                           case_probabilities=probabilities)
    drawn = np.array([int(image[0, 0, 0, 0]) for image, _ in dataset])
    assert abs((drawn == 3).mean() - 0.6) < 0.04
    assert all(abs((drawn == v).mean() - 0.4 / 3) < 0.04 for v in range(3))
    again = np.array([int(image[0, 0, 0, 0]) for image, _ in dataset])
    assert np.array_equal(drawn, again)                         # seeded
    with pytest.raises(ValueError, match="one non-negative value per case"):
        PatchDataset(cases, PatchSampler((8, 8, 8)), 10, case_probabilities=[0.5, 0.5])
