"""`attention-unet-segment demo`: the whole product on one held-out phantom."""

from __future__ import annotations

import argparse

from ..core.options import WindowOptions
from ..reports.demo import DEFAULT_DEMO_SEED, run_demo
from .argtypes import add_progress_argument, add_window_arguments


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="segment a synthetic phantom with the bundled model and write every output",
        description="Generate a synthetic abdominal CT phantom (held-out seed), segment it with the bundled "
        "default model, write the CT, ground truth, labelmap, .seg.nrrd, attention maps and a PNG figure "
        "(drawn with matplotlib, the 'figures' extra; skipped with a warning without it), and print the "
        "Dice against the phantom's ground truth.",
    )
    p.add_argument("-o", "--output", default="demo-output", metavar="DIR",
                   help="output folder (default: demo-output); its demo files are replaced")
    p.add_argument("--seed", type=int, default=DEFAULT_DEMO_SEED,
                   help=f"phantom seed (default: {DEFAULT_DEMO_SEED}, never used in training)")
    p.add_argument("--model", metavar="MODEL", help="model file or folder (default: the bundled model)")
    add_window_arguments(p)
    p.add_argument("--fast", action="store_true",
                   help="a coarser, shorter phantom (1x1x5 mm, 120 mm long) for a quick look")
    p.add_argument("--vary", action="store_true",
                   help="add the per-case variation of `phantom` (contrast phase, fatty pancreas, coverage): "
                   "phantoms the bundled model was not trained on")
    add_progress_argument(p)
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    window = WindowOptions(overlap=args.overlap, batch_size=args.batch_size, device=args.device,
                           precision=args.precision)
    return run_demo(args.output, seed=args.seed, model_file=args.model, window=window, fast=args.fast,
                    progress=args.progress, vary=args.vary)
