"""What the sub-commands share at the argparse boundary: value types (one message style for
every command), the window options of every command that segments, deprecated spellings, and
option values that start with a minus sign."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, Sequence

from ..core.errors import InputError
from ..core.options import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, DEVICES, PRECISIONS, check_overlap
from ..service.contract import PROGRESS_KINDS


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse `type` accepting integers >= minimum, e.g. `type=whole_number(1)`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}; got {text}")
        return value

    return parse


def xyz_to_zyx(cast: Callable[[str], float], invalid: Callable[[Sequence[float]], bool],
               expected: str) -> Callable[[str], tuple]:
    """An argparse `type` for "X,Y,Z" (or one value for all three axes), returned in (z, y, x).

    Users write sizes and spacings in (x, y, z), as the paper and Slicer do; the core works in
    numpy's (z, y, x). `invalid(values)` rejects out-of-range values; the message says
    "expected <expected>; got '<text>'".
    """

    def parse(text: str) -> tuple:
        try:
            values = tuple(cast(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) == 1:
            values = values * 3
        if len(values) != 3 or invalid(values):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
        return values[::-1]

    return parse


def label_values(option: str) -> Callable[[str], tuple]:
    """An argparse `type` for the values of one structure in the label syntax (core.labels)."""
    from ..evaluation.evaluate import parse_labels

    def parse(text: str) -> tuple:
        try:
            return parse_labels(text, option)
        except InputError as error:
            raise argparse.ArgumentTypeError(error.problem.replace(f"{option} ", "", 1)) from None

    return parse


def ras_point(text: str) -> tuple[float, float, float]:
    """"R,A,S" in millimetres, as Slicer shows a point (negative values welcome)."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected R,A,S in millimetres, e.g. -12.5,30,4; got {text!r}")
    return values  # type: ignore[return-value]


class ClickAction(argparse.Action):
    """`--point` (include) and `--exclude-point` (exclude), repeatable, into one list `clicks` in
    the order they stand on the command line: the order of the clicks."""

    def __call__(self, parser, namespace, values, option_string=None):
        from ..core.options import Click

        clicks = list(getattr(namespace, self.dest, None) or [])
        clicks.append(Click(values, include=self.const))
        setattr(namespace, self.dest, clicks)


def overlap(text: str) -> float:
    try:
        return check_overlap(float(text))
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(f"expected an overlap in [0, 1); got {text!r}") from None


OVERLAP_HELP = (f"fraction of each sliding window shared with its neighbour, 0..<1 (default: {DEFAULT_OVERLAP:g}; "
                "lower is faster). The step between windows, patch x (1 - overlap), is rounded down to a "
                "multiple of 16 voxels, so the overlap used can be higher: 0.25 with a 96-voxel patch "
                "runs at 0.33")


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --precision, --overlap, --batch-size: how every command that segments runs the network."""
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the network runs (default: auto = CUDA GPU if present, else CPU; "
                        "under torchrun, the rank's LOCAL_RANK GPU)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="arithmetic on the device (default: auto = bf16/fp16 autocast on CUDA; on the CPU "
                        "bf16 only for a model file that records a measured agreement, else fp32)")
    parser.add_argument("--overlap", type=overlap, default=DEFAULT_OVERLAP, help=OVERLAP_HELP)
    parser.add_argument("--batch-size", type=whole_number(1), default=DEFAULT_BATCH_SIZE,
                        help=f"windows per forward pass (default: {DEFAULT_BATCH_SIZE})")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=PROGRESS_KINDS, default=PROGRESS_KINDS[0],
                        help="progress on stderr: a bar for people, JSON lines for programs, or nothing "
                        "(default: bar)")


def deprecated(parser: argparse.ArgumentParser, old: str, new: str, **kwargs) -> None:
    """Accept `old` as a hidden spelling of `new` (same destination), saying so in one line."""

    class Warn(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"warning: {option_string} is deprecated; use {new}", file=sys.stderr)
            setattr(namespace, self.dest, self.const if values is None or self.nargs == 0 else values)

    parser.add_argument(old, action=Warn, help=argparse.SUPPRESS, **kwargs)


#: A value that is numbers separated by commas, possibly negative: "-12.5,30,4".
_NUMBERS = re.compile(r"^-\d*\.?\d+(?:[eE][-+]?\d+)?(?:,\s*-?\d*\.?\d+(?:[eE][-+]?\d+)?)*$")
#: Options whose value may start with a minus sign.
NEGATIVE_VALUE_OPTIONS = ("--point", "--exclude-point")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """["--point", "-12.5,30,4"] -> ["--point=-12.5,30,4"]: argparse takes a value that starts
    with "-" (and is no plain number) for an option, and Slicer's coordinates are negative half
    the time."""
    out: list[str] = []
    words = list(argv)
    i = 0
    while i < len(words):
        if words[i] == "--":   # the rest is positional
            return out + words[i:]
        if words[i] in NEGATIVE_VALUE_OPTIONS and i + 1 < len(words) and _NUMBERS.match(words[i + 1]):
            out.append(f"{words[i]}={words[i + 1]}")
            i += 2
            continue
        out.append(words[i])
        i += 1
    return out
