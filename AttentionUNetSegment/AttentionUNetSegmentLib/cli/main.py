"""`attention-unet-segment`: the headless command line (segment, phantom, train, evaluate,
compare, demo, realism, figure).

Errors a user can fix print one line `error: <file>: <problem>` and exit with code 2; nothing is
written unless every output could be written (temporary files, then rename). The exit codes are
service.contract's (the Slicer module reads them too) and `--help` lists them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Optional, Sequence

from .. import __version__
from ..core.errors import CancelledError, InputError
from ..service.contract import EXIT_BAD_INPUT, EXIT_BUG, EXIT_CANCELLED, EXIT_CODES_TEXT, EXIT_OK
from .argtypes import join_negative_values
from .click_worker import add_click_worker_parser
from .segment import add_segment_parser

# Sub-commands beside `segment`, one module of this package each, exposing register_cli(subparsers).
# A Slicer install ships only the runtime (core, files, service, scene) and `segment`: a command whose
# parts are not installed is left out of the parser rather than breaking it.
_OPTIONAL_COMMANDS = ("phantom", "train", "evaluate", "evaluate_clicks", "compare", "train_clicks", "demo", "realism", "figure")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attention-unet-segment",
        description="Pancreas segmentation on CT with a 3D Attention U-Net (Oktay et al. 2018), "
        "with the attention-gate maps that show where the network looked.",
        epilog=EXIT_CODES_TEXT.capitalize() + ".",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_segment_parser(subparsers)
    add_click_worker_parser(subparsers)
    package = __package__.rpartition(".")[0]
    for name in _OPTIONAL_COMMANDS:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as error:
            if not (error.name or "").startswith(package + "."):
                raise  # a third-party package missing is a real problem, not a slim install
            continue
        module.register_cli(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or EXIT_OK)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (CancelledError, KeyboardInterrupt):
        print("cancelled; no output written", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception:  # a bug, not bad input: keep the traceback for the report
        traceback.print_exc()
        print("error: unexpected failure (see the traceback above); no output written", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
