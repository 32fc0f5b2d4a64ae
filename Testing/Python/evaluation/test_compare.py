"""Paired model comparison (`compare`): statistics against hand-computed values, CLI errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from AttentionUNetSegmentLib.cli.main import main
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.evaluation import compare as comparison


def _csv(path: Path, rows: dict[str, dict[str, float | str]]) -> Path:
    columns = list(next(iter(rows.values())))
    lines = [",".join(["case"] + columns)]
    lines += [",".join([case] + [str(values[c]) for c in columns]) for case, values in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _pair(tmp_path: Path, dice_a, dice_b, hd_a=None, hd_b=None) -> tuple[Path, Path]:
    hd_a = hd_a if hd_a is not None else [1.0] * len(dice_a)
    hd_b = hd_b if hd_b is not None else [1.0] * len(dice_b)
    a = {f"case_{i:02d}": {"dice": d, "hd95_mm": h} for i, (d, h) in enumerate(zip(dice_a, hd_a))}
    b = {f"case_{i:02d}": {"dice": d, "hd95_mm": h} for i, (d, h) in enumerate(zip(dice_b, hd_b))}
    return _csv(tmp_path / "a.csv", a), _csv(tmp_path / "b.csv", b)


def test_statistics_match_hand_computation(tmp_path):
    dice_a = [0.90, 0.85, 0.80, 0.95, 0.70]
    dice_b = [0.88, 0.86, 0.75, 0.95, 0.60]
    a, b = (comparison.read_metric_csv(p) for p in _pair(tmp_path, dice_a, dice_b))
    result = comparison.compare(a, b, "dice")
    differences = np.array(dice_a) - np.array(dice_b)      # +.02 -.01 +.05 0 +.10
    assert result.n == 5
    assert result.mean_difference == pytest.approx(differences.mean())
    assert result.std_difference == pytest.approx(differences.std(ddof=1))
    assert (result.wins, result.ties, result.losses) == (3, 1, 1)
    # Exact two-sided sign-flip p by brute force: patterns whose |mean| >= observed.
    flips = [abs(np.dot(signs, differences)) / 5 for signs in itertools.product((1, -1), repeat=5)]
    expected = sum(f >= abs(differences.mean()) - 1e-12 for f in flips) / 32
    assert result.exact_p and result.p_value == pytest.approx(expected)
    low, high = result.ci95
    assert differences.min() <= low < differences.mean() < high <= differences.max()
    # Deterministic: the same files give the same interval.
    assert comparison.compare(a, b, "dice").ci95 == result.ci95


def test_p_value_extremes_and_monte_carlo():
    rng = np.random.default_rng(0)
    # All 20 differences the same sign: only the observed pattern and its mirror are as extreme,
    # exact p = 2 / 2^20; the Monte Carlo estimate is bounded below by 1 / (N + 1).
    p, exact = comparison.sign_flip_p_value(np.full(20, 0.01), rng)
    assert not exact and p == pytest.approx(1 / (comparison.RANDOM_PERMUTATIONS + 1), rel=0.5)
    result = comparison.PairedComparison("dice", 20, 0.9, 0.89, 0.01, 0.0, (0.01, 0.01), 20, 0, 0,
                                         p, exact, 0)
    assert "p < 2e-05 (Monte Carlo, no random pattern as extreme)" in \
        "\n".join(comparison.format_comparison(result, "a", "b"))
    # Symmetric differences (mean 0): every pattern is at least as extreme, p = 1.
    p, exact = comparison.sign_flip_p_value(np.array([0.01, -0.01, 0.02, -0.02]), rng)
    assert exact and p == 1.0
    # Monte Carlo agrees with the exact value where both can be computed (n = 16).
    differences = np.random.default_rng(1).normal(0.003, 0.01, 16)
    exact_p, _ = comparison.sign_flip_p_value(differences, rng)
    comparison_max = comparison.EXACT_PERMUTATION_MAX_N
    try:
        comparison.EXACT_PERMUTATION_MAX_N = 0
        estimate, is_exact = comparison.sign_flip_p_value(differences, rng)
    finally:
        comparison.EXACT_PERMUTATION_MAX_N = comparison_max
    assert not is_exact and estimate == pytest.approx(exact_p, abs=0.01)


def test_lower_is_better_for_distances_and_inf_cases_are_left_out(tmp_path):
    a, b = (comparison.read_metric_csv(p) for p in _pair(
        tmp_path, [0.9, 0.9, 0.9, 0.9], [0.9, 0.9, 0.9, 0.9],
        hd_a=[2.0, 3.0, "inf", 1.0], hd_b=[3.0, 4.0, 2.0, 1.5]))
    result = comparison.compare(a, b, "hd95_mm")
    assert result.n == 3 and result.n_not_finite == 1
    assert (result.wins, result.losses) == (3, 0)          # A's distances are smaller: A wins
    assert result.mean_difference == pytest.approx(-2.5 / 3)
    text = "\n".join(comparison.format_comparison(result, "att", "unet"))
    assert "att better in 3, tied in 0, worse in 0" in text and "1 case(s) left out" in text


def test_cli_prints_comparison(tmp_path, capsys):
    a, b = _pair(tmp_path, [0.9, 0.8, 0.7], [0.85, 0.8, 0.72])
    assert main(["compare", str(a), str(b), "--metric", "dice", "--names", "attention,unet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dice: attention 0.8000, unet 0.7900 (mean over 3 paired cases)")
    assert "attention - unet: +0.0100" in out and "paired sign-flip p = " in out


@pytest.mark.parametrize("problem", ["other_cases", "no_column", "binary", "no_case_column", "missing",
                                     "text_value"])
def test_cli_bad_input_is_one_line_naming_the_file(tmp_path, capsys, problem):
    a, b = _pair(tmp_path, [0.9, 0.8, 0.7], [0.85, 0.8, 0.72])
    expected = {"other_cases": "does not score the same cases", "no_column": "has no 'recall' column",
                "binary": "not a text (CSV) file", "no_case_column": "not a per-case metrics CSV",
                "missing": "file not found", "text_value": "dice = 'high' is not a number"}[problem]
    metric = "recall" if problem == "no_column" else "dice"
    if problem == "no_column":
        _csv(a, {"case_00": {"dice": 0.8, "recall": 0.8}, "case_01": {"dice": 0.8, "recall": 0.8},
                 "case_02": {"dice": 0.8, "recall": 0.8}})
    elif problem == "no_case_column":
        b.write_text("x,y\n1,2\n", encoding="utf-8")
    elif problem == "other_cases":
        _csv(b, {"case_00": {"dice": 0.8}, "case_01": {"dice": 0.8}, "case_99": {"dice": 0.8}})
    elif problem == "binary":
        b.write_bytes(b"\x89PNG\r\n\x1a\n")
    elif problem == "missing":
        b.unlink()
    elif problem == "text_value":
        _csv(b, {"case_00": {"dice": "high"}, "case_01": {"dice": 0.8}, "case_02": {"dice": 0.8}})
    assert main(["compare", str(a), str(b), "--metric", metric]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {b}: ") and expected in err[0], err


def test_compare_reports_file_when_too_few_finite_cases(tmp_path):
    a, b = (comparison.read_metric_csv(p) for p in _pair(
        tmp_path, [0.9, 0.9], [0.9, 0.9], hd_a=["inf", 1.0], hd_b=[1.0, 1.0]))
    with pytest.raises(InputError, match="fewer than 2 cases with a finite hd95_mm"):
        comparison.compare(a, b, "hd95_mm")
