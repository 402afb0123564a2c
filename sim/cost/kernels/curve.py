"""Measured latency curves over one size (bytes, tokens): the shape every one-dimensional kernel table takes."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Seconds by message size: log-log interpolation inside the measured sizes, the smallest size's latency below
    them, the largest size's bandwidth above them."""

    sizes: np.ndarray
    log_s: np.ndarray
    _logs: list = field(init=False, repr=False, compare=False)
    _vals: list = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_logs", [math.log(v) for v in self.sizes])
        object.__setattr__(self, "_vals", [float(v) for v in self.log_s])

    def time(self, nbytes: float) -> float:
        logs, vals = self._logs, self._vals
        if nbytes <= self.sizes[0]:
            return math.exp(vals[0])
        x = math.log(nbytes)
        if x >= logs[-1]:
            return math.exp(vals[-1]) * nbytes / self.sizes[-1]
        i = bisect_right(logs, x) - 1
        w = (x - logs[i]) / (logs[i + 1] - logs[i])
        return math.exp(vals[i] * (1 - w) + vals[i + 1] * w)


@dataclass(frozen=True)
class LinearCurve:
    """Seconds by a count of work (tokens): linear interpolation between measured counts, the smallest count's time
    below them, the largest count's rate above them. A kernel's time is affine in its work within one regime (a
    fixed launch plus a cost per weight read or per token), so straight segments between knots follow it where a
    power law between distant knots would not (e.g. below the point where every expert is busy)."""

    sizes: np.ndarray
    log_s: np.ndarray
    _sizes: list = field(init=False, repr=False, compare=False)
    _secs: list = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sizes", [float(v) for v in self.sizes])
        object.__setattr__(self, "_secs", [math.exp(v) for v in self.log_s])

    def time(self, count: float) -> float:
        xs, ys = self._sizes, self._secs
        if count <= xs[0]:
            return ys[0]
        if count >= xs[-1]:
            return ys[-1] * count / xs[-1]
        i = bisect_right(xs, count) - 1
        w = (count - xs[i]) / (xs[i + 1] - xs[i])
        return ys[i] * (1 - w) + ys[i + 1] * w
