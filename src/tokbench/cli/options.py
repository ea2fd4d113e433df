"""Bounded command-line numbers: every numeric option declares its range once, where it is added.

``type=integer(1, 10_000)`` or ``type=number(0, 1, exclusive=True)`` in ``add_argument``: a value out of range,
not a number, NaN or infinite is refused by argparse with one line naming the option and the range (exit 2),
before anything runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

INT_LIMIT = 2**31 - 1  # the largest count any option accepts unless it declares a smaller one


def integer(minimum: int, maximum: int = INT_LIMIT) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            expected = f"expected an integer from {minimum:,} to {maximum:,}, got {text!r}"
            raise argparse.ArgumentTypeError(expected) from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum:,} to {maximum:,}, got {value:,}")
        return value

    parse.__name__ = "integer"
    return parse


def number(minimum: float, maximum: float, *, exclusive: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [minimum, maximum], or in (minimum, maximum) when ``exclusive``."""
    shown = f"({minimum:g}, {maximum:g})" if exclusive else f"[{minimum:g}, {maximum:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {shown}, got {text!r}") from None
        inside = minimum < value < maximum if exclusive else minimum <= value <= maximum
        if not math.isfinite(value) or not inside:
            raise argparse.ArgumentTypeError(f"must be a number in {shown}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse
