"""`attention-unet-segment compare`: paired comparison of two models on the same cases.

The paper's ablation (Attention U-Net vs U-Net) is a paired design: both networks segment the
same held-out cases, so what matters is the per-case difference, not two overlapping
mean ± std. Input: two per-case CSV files written by `evaluate -o FILE.csv` (columns `case`, metrics).

For one metric, over the cases present in both files:

- the per-case difference A - B: mean, std (ddof=1), and a 95 % percentile bootstrap
  confidence interval of the mean (10,000 resamples, fixed seed, so reruns print the same);
- wins / ties / losses of A (by the metric's direction: higher Dice is better, lower HD95 is);
- a two-sided paired sign-flip permutation test of "mean difference = 0" (exact over all
  2^n sign patterns up to n = 16, else 100,000 random patterns with a fixed seed). It makes
  no normality assumption, which matters with 10-30 cases.

Cases where either value is not finite (HD95/ASSD are inf when one mask is empty) are left out
of that metric and counted.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError, PathLike

#: True where a larger value is better.
HIGHER_IS_BETTER = {"dice": True, "precision": True, "recall": True, "hd95_mm": False, "assd_mm": False}
BOOTSTRAP_RESAMPLES = 10_000
EXACT_PERMUTATION_MAX_N = 16      # 2^16 = 65,536 sign patterns
RANDOM_PERMUTATIONS = 100_000
TIE_TOLERANCE = 1e-6              # CSV values have 6 decimals


@dataclass
class PairedComparison:
    """Paired statistics of metric A - B over the shared cases."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    std_difference: float
    ci95: tuple[float, float]
    wins: int
    ties: int
    losses: int
    p_value: float
    exact_p: bool
    n_not_finite: int


@dataclass
class MetricTable:
    """An `evaluate -o FILE.csv` file: {case: {metric: value}}, and where it came from (for messages)."""

    path: Path
    cases: dict[str, dict[str, float]]


def read_metric_csv(path: PathLike) -> MetricTable:
    """Read an `evaluate -o FILE.csv` file; InputError naming the file and the problem."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text (CSV) file") from None
    except (OSError, csv.Error) as error:
        raise InputError(path, f"cannot read as CSV ({error})") from None
    if not rows or "case" not in rows[0]:
        raise InputError(path, "not a per-case metrics CSV (expected a 'case' column and one row per "
                               "case, as written by `evaluate -o FILE.csv`)")
    table: dict[str, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        values = {}
        for key, text in row.items():
            if key == "case" or key is None:
                continue
            try:
                values[key] = float(text)
            except (TypeError, ValueError):
                raise InputError(path, f"line {line}: {key} = {text!r} is not a number") from None
        table[row["case"]] = values
    return MetricTable(path, table)


def _bootstrap_ci(differences: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    picks = rng.integers(0, differences.size, size=(BOOTSTRAP_RESAMPLES, differences.size))
    means = differences[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def sign_flip_p_value(differences: np.ndarray, rng: np.random.Generator) -> tuple[float, bool]:
    """Two-sided p of the paired permutation test; (p, exact). The observed pattern counts."""
    n = differences.size
    observed = abs(differences.mean())
    if n <= EXACT_PERMUTATION_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        exact = True
    else:
        signs = rng.choice((1.0, -1.0), size=(RANDOM_PERMUTATIONS, n))
        exact = False
    means = np.abs(signs @ differences) / n
    # The small slack keeps patterns equal to the observed one (up to rounding) counted as extreme.
    extreme = int(np.count_nonzero(means >= observed - 1e-12))
    if exact:
        return extreme / len(signs), True
    return (extreme + 1) / (len(signs) + 1), False


def compare(a: MetricTable, b: MetricTable, metric: str = "dice", seed: int = 0) -> PairedComparison:
    """Paired comparison of `metric` between two `read_metric_csv` tables (A - B)."""
    if set(a.cases) != set(b.cases):
        only = sorted(set(a.cases) ^ set(b.cases))
        raise InputError(b.path, f"does not score the same cases as {a.path} ({len(only)} case(s) "
                                 f"in one file only, e.g. {only[0]}); a paired comparison needs the "
                                 "same cases in both")
    shared = sorted(a.cases)
    for table in (a, b):
        if any(metric not in table.cases[case] for case in shared):
            raise InputError(table.path, f"has no '{metric}' column")
    values_a = np.array([a.cases[case][metric] for case in shared])
    values_b = np.array([b.cases[case][metric] for case in shared])
    finite = np.isfinite(values_a) & np.isfinite(values_b)
    values_a, values_b = values_a[finite], values_b[finite]
    if values_a.size < 2:
        raise InputError(b.path, f"fewer than 2 cases with a finite {metric} in both files "
                                 f"(this and {a.path}); nothing to compare")
    differences = values_a - values_b
    better = differences if HIGHER_IS_BETTER.get(metric, True) else -differences
    rng = np.random.default_rng(seed)
    p_value, exact = sign_flip_p_value(differences, rng)
    return PairedComparison(
        metric=metric, n=int(differences.size),
        mean_a=float(values_a.mean()), mean_b=float(values_b.mean()),
        mean_difference=float(differences.mean()), std_difference=float(differences.std(ddof=1)),
        ci95=_bootstrap_ci(differences, rng),
        wins=int(np.count_nonzero(better > TIE_TOLERANCE)),
        ties=int(np.count_nonzero(np.abs(better) <= TIE_TOLERANCE)),
        losses=int(np.count_nonzero(better < -TIE_TOLERANCE)),
        p_value=p_value, exact_p=exact, n_not_finite=int(np.count_nonzero(~finite)))


def format_comparison(result: PairedComparison, a_name: str, b_name: str) -> list[str]:
    """Human-readable lines for one metric."""
    digits = 4 if result.metric in ("dice", "precision", "recall") else 3
    f = lambda v: f"{v:+.{digits}f}"          # noqa: E731  (signed, fixed digits)
    if result.exact_p:
        p_text = f"p = {result.p_value:.3g} (exact)"
    elif result.p_value * (RANDOM_PERMUTATIONS + 1) < 1.5:
        # No random pattern was as extreme: the estimate is only a bound.
        p_text = f"p < {2 / (RANDOM_PERMUTATIONS + 1):.0e} (Monte Carlo, no random pattern as extreme)"
    else:
        p_text = f"p = {result.p_value:.3g} (Monte Carlo)"
    lines = [
        f"{result.metric}: {a_name} {result.mean_a:.{digits}f}, {b_name} {result.mean_b:.{digits}f} "
        f"(mean over {result.n} paired cases)",
        f"  {a_name} - {b_name}: {f(result.mean_difference)} ± {result.std_difference:.{digits}f}, "
        f"95 % bootstrap CI [{f(result.ci95[0])}, {f(result.ci95[1])}]",
        f"  {a_name} better in {result.wins}, tied in {result.ties}, worse in {result.losses} case(s); "
        f"paired sign-flip {p_text}",
    ]
    if result.n_not_finite:
        lines.append(f"  {result.n_not_finite} case(s) left out: {result.metric} is inf in at least one file")
    return lines


