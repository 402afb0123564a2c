"""A measured latency curve over one size (bytes, tokens): the shape every one-dimensional kernel table takes."""

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
