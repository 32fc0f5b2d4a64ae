"""`attention-unet-segment realism`: phantoms measured beside the real CT of shared/data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.errors import InputError
from .argtypes import deprecated, whole_number


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "realism",
        help="measure phantoms beside the real labelled CT (HU per organ, sizes, positions, noise, body)",
        description="Measure the real labelled CT of DATA (NIH Pancreas-CT 0001, TotalSegmentator s0009 and "
        "example) and N phantoms the same way, and print them side by side: HU mean/std per organ, fat "
        "and air, organ volumes and body-normalised positions, body size, field of view, slices, "
        "noise and texture (in fat and liver), table and arms.",
    )
    p.add_argument("--data", required=True, metavar="DIR",
                   help="folder with the real cases (in a development checkout: ../shared/data)")
    p.add_argument("--phantoms", type=whole_number(1), default=4, metavar="N", help="phantoms to measure (default: 4)")
    p.add_argument("--seed", type=whole_number(0), default=0, metavar="S",
                   help="dataset seed of the phantoms, as for `phantom` (default: 0)")
    p.add_argument("--no-variation", action="store_true",
                   help="phantoms without the per-case variation (as `phantom --no-variation`), for a before/after")
    p.add_argument("-o", "--output", dest="json", metavar="FILE.json", help="also write every number to this JSON file")
    deprecated(p, "--json", "-o/--output", dest="json")
    p.add_argument("--figures", metavar="PREFIX",
                   help="also draw PREFIX_slices.png and PREFIX_hu.png (needs matplotlib)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from ..files.writing import atomic_output
    from ..phantom.generator import case_seed, generate_case
    from ..phantom.realism import PHANTOM_ORGAN_IDS, REAL_CASES, compare, format_table, read_real_case

    data = Path(args.data)
    if not data.is_dir():
        raise InputError(data, "is not a folder (pass --data with the shared/data folder)")
    for target in [args.json, args.figures and args.figures + "_hu.png"]:
        if target and not Path(target).parent.is_dir():
            raise InputError(target, f"cannot be written: folder '{Path(target).parent}' does not exist")
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 - progress, not results
    phantoms = []
    for index in range(args.phantoms):
        seed = case_seed(args.seed, index)
        log(f"phantom {index + 1}/{args.phantoms} (seed {seed}) ...")
        case = generate_case(seed, all_organs=True, vary=not args.no_variation)
        phantoms.append((f"phantom {index}", case.ct, case.labels))
    real, measured = compare(data, phantoms, log)
    print(format_table(real, measured))
    if args.json:
        with atomic_output(args.json) as temporary:
            temporary.write_text(json.dumps({"real": real, "phantoms": measured}, indent=1) + "\n", encoding="utf-8")
    if args.figures:
        from ..reports.figures import FiguresUnavailable
        from ..reports.realism import hu_png, slices_png

        cases = [(c.name, *read_real_case(data, c), c.organ_ids["pancreas"]) for c in REAL_CASES]
        cases += [(name, ct, labels, PHANTOM_ORGAN_IDS["pancreas"]) for name, ct, labels in phantoms[:5]]
        try:
            slices_png(args.figures + "_slices.png", cases)
            hu_png(args.figures + "_hu.png", real, measured)
        except FiguresUnavailable as missing:
            log(f"warning: no figures ({missing})")
    return 0
