"""`attention-unet-segment phantom`: synthetic abdominal CT phantoms with organ labels, written as
a Decathlon-layout dataset that `train` reads."""

from __future__ import annotations

import argparse
import sys
import time

from ..core.errors import InputError
from ..phantom.generator import write_dataset
from .argtypes import whole_number


def register_cli(subparsers) -> None:
    """Add the `phantom` sub-command."""
    p = subparsers.add_parser(
        "phantom",
        help="write synthetic abdominal CT phantoms with pancreas labels (Decathlon layout)",
        description="Generate synthetic abdominal CTs (int16 Hounsfield units) with pancreas labels and "
        "write them as DIR/imagesTr/phantom_XXX_0000.nii.gz, DIR/labelsTr/phantom_XXX.nii.gz and "
        "DIR/dataset.json. Each case has random anatomy, spacing (0.6-1.0 mm in-plane, 1-5 mm "
        "slices), field of view, noise, header orientation and (unless --no-variation) contrast phase, "
        "fatty pancreas, coverage and stomach filling; the same --seed always gives the same dataset.",
    )
    p.add_argument("-o", "--output", metavar="DIR",
                   help="dataset folder (created if missing; must not already hold a dataset unless --overwrite)")
    # The folder used to be positional (`phantom OUT_DIR`): still accepted, with a warning.
    p.add_argument("out_dir", nargs="?", metavar="OUT_DIR", help=argparse.SUPPRESS)
    p.add_argument("--cases", type=whole_number(1), default=10, metavar="N", help="number of cases to generate (default: 10)")
    p.add_argument("--seed", type=whole_number(0), default=0, metavar="S",
                   help="dataset seed; case i uses a seed derived from (seed, i), listed in dataset.json (default: 0)")
    p.add_argument("--all-organs", action="store_true",
                   help="label every modelled organ (liver 2, spleen 3, kidneys 4/5, stomach 6, duodenum 7, ...; "
                   "see dataset.json) instead of only the pancreas (1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset already in DIR (its phantom files and dataset.json)")
    p.add_argument("--fast", action="store_true",
                   help="quick previews and tests: 1 x 1 x 5 mm voxels and a 120 mm z-range instead of random "
                   "scanner settings (same anatomy per seed)")
    p.add_argument("--no-variation", action="store_true",
                   help="leave out the per-case variation (contrast phase, fatty pancreas, coverage, cropped field "
                   "of view, noise level, empty stomach): every case portal-venous, as before that variation")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run `phantom` from parsed arguments; returns the exit code."""
    if args.out_dir is not None:
        if args.output is not None:
            raise InputError(args.out_dir, "give the dataset folder once, as -o DIR")
        print("warning: `phantom OUT_DIR` is deprecated; use `phantom -o OUT_DIR`", file=sys.stderr)
    folder = args.output or args.out_dir
    if folder is None:
        raise InputError(None, "name the dataset folder with -o DIR")
    start = time.perf_counter()
    out = write_dataset(folder, args.cases, args.seed, all_organs=args.all_organs,
                        overwrite=args.overwrite, fast=args.fast, log=lambda line: print(line, flush=True),
                        vary=not args.no_variation)
    print(f"Wrote {args.cases} case(s) to {out}/ (imagesTr/, labelsTr/, dataset.json) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0
