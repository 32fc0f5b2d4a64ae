"""argparse value types shared by the sub-commands (one message style for every command)."""

from __future__ import annotations

import argparse
from typing import Callable, Sequence


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
