"""Checks of numbers that come from users (flags, TOML fields, config files), once, at the boundary: the field's
name in the message, what was expected, what was given. NaN and infinity are refused unless a field says that
infinity means something (a window of all time)."""

from __future__ import annotations

import math
from typing import Any

from sim.errors import FleetsimError

MAX_TOKENS = 10_000_000  # a prompt or output longer than any model's context by far: a typo, not a workload


def number(value: Any, field: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           allow_inf: bool = False, what: str = "a number") -> float:
    """`value` as a float, or one clear error: a real number (not a bool, not NaN, finite unless `allow_inf`),
    within [low, high] (low excluded when `low_open`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))
    if ok and not allow_inf and math.isinf(value):
        ok = False
    if ok and low is not None and (value < low or (low_open and value == low)):
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        raise FleetsimError(f"{field}: expected {what}, got {value!r}")
    return float(value)


def integer(value: Any, field: str, *, low: int = 1, high: int | None = None, what: str | None = None) -> int:
    """`value` as an int (not a bool, not a float), within [low, high]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        raise FleetsimError(f"{field}: expected {what or integer_what(low, high)}, got {value!r}")
    return value


def integer_what(low: int, high: int | None) -> str:
    """How a range of integers reads in a message: 'a positive integer up to 10,000,000'."""
    base = "a positive integer" if low == 1 else "a non-negative integer" if low == 0 else f"an integer >= {low}"
    return base + (f" up to {high:,}" if high is not None else "")
