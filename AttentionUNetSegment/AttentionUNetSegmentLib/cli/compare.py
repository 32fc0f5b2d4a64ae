"""`attention-unet-segment compare`: the paired comparison of two models' per-case metrics
(two `evaluate -o` CSV files), printed as a table."""

from __future__ import annotations

import argparse

from ..core.errors import InputError
from ..evaluation.compare import (
    HIGHER_IS_BETTER,
    compare,
    format_comparison,
    read_metric_csv,
)


def register_cli(subparsers) -> None:
    """Add the `compare` sub-command."""
    p = subparsers.add_parser(
        "compare",
        help="paired comparison of two models' per-case metrics (the Attention vs U-Net ablation)",
        description="Compare two per-case metric CSV files written by `evaluate -o FILE.csv` for the same "
        "cases (for example the Attention U-Net and the plain U-Net on one held-out set): per-case "
        "difference A - B with its mean, std and 95 %% bootstrap interval, wins/ties/losses, and a "
        "paired sign-flip permutation test.",
    )
    p.add_argument("csv_a", metavar="A.csv", help="per-case metrics of model A (evaluate -o FILE.csv)")
    p.add_argument("csv_b", metavar="B.csv", help="per-case metrics of model B, same cases")
    p.add_argument("--metric", action="append", choices=sorted(HIGHER_IS_BETTER), default=None,
                   help="metric to compare; repeat for several (default: dice, hd95_mm, assd_mm)")
    p.add_argument("--names", default="A,B", metavar="NAME_A,NAME_B",
                   help="names for the two models in the output (default: A,B)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.names.split(",")]
    if len(names) != 2 or not all(names):
        raise InputError(None, f"--names {args.names!r}: expected two names separated by a comma")
    a, b = read_metric_csv(args.csv_a), read_metric_csv(args.csv_b)
    lines = []
    for metric in args.metric or ["dice", "hd95_mm", "assd_mm"]:
        lines += format_comparison(compare(a, b, metric), *names)
    print("\n".join(lines))
    return 0
