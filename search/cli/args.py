"""Argument types of the CLI: integers as people write them, positive numbers, ``none``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["index_list", "int_expr", "non_negative_float", "or_none", "positive_float", "positive_int"]


def int_expr(text: str) -> int:
    """Integers as written by people: 1048576, 2**20, 10**12, 1_000_000."""
    t = text.replace("_", "").strip()
    try:
        if "**" in t:
            base, exp = t.split("**", 1)
            return int(base) ** int(exp)
        if "e" in t.lower() and t.replace(".", "", 1).lower().replace("e", "", 1).isdigit():
            value = float(t)
            if value != int(value):
                raise ValueError
            return int(value)
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def index_list(text: str) -> list[int]:
    """Comma-separated indices from 0: ``0,2``."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected indices such as 0,2; got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"indices are >= 0, got {text!r}")
    return values


def positive_int(text: str) -> int:
    value = int_expr(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _float(text: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 if positive else value >= 0):
        raise argparse.ArgumentTypeError(f"must be {'>' if positive else '>='} 0, got {text}")
    return value


def positive_float(text: str) -> float:
    return _float(text, positive=True)


def non_negative_float(text: str) -> float:
    return _float(text, positive=False)


def or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag whose default may be None accepts ``none`` to ask for it back."""

    def convert(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)

    convert.__name__ = parse.__name__
    return convert
