"""`click-worker`: the long-lived engine process behind the Slicer module's click mode.

It reads one JSON request per line on stdin and answers one JSON line each on stdout (the
protocol is in service.contract); people use `segment --point ... --exclude-point ...` instead.
"""

from __future__ import annotations

import argparse
import sys


def add_click_worker_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "click-worker",
        help="serve interactive clicks for the Slicer module (JSON lines on stdin and stdout)",
        description="Answer click requests of the Slicer module, one JSON object per line on stdin and "
        "stdout (see service/contract.py): open a CT once, then each list of clicks is answered with "
        "only the network work that changed. For a terminal, use `segment --point ... --exclude-point ...`.")
    p.set_defaults(func=run_click_worker)


def run_click_worker(args: argparse.Namespace) -> int:
    from ..service.click_worker import serve

    return serve(sys.stdin, sys.stdout)
