"""GEMM latency from a measured (m, n, k) grid.

A table holds log-latency on a grid of m (tokens), n (output features) and k (input features) for one GPU and one
weight precision. Inside the grid the latency is interpolated linearly in log-log space (trilinear over the three
axes); above it (more tokens, wider or deeper weights than measured) it is the edge's latency scaled by the work
added, the compute-bound regime of the roofline; below the smallest n or k (never in a transformer) the caller's
roofline applies.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from sim.cost.kernels.shipped import shipped


@dataclass(frozen=True)
class GemmTable:
    m: np.ndarray  # ascending, tokens
    n: np.ndarray
    k: np.ndarray
    log_s: np.ndarray  # [m, n, k] natural log of seconds
    source: str
    # The same grid as plain Python lists: a lookup is a handful of float operations, faster than numpy's
    # per-call overhead at this size.
    _axes: tuple = field(init=False, repr=False, compare=False)
    _cells: list = field(init=False, repr=False, compare=False)
    # (n, k) -> the grid interpolated at that weight shape for every measured m, and the scale beyond the grid:
    # a model has a handful of weight shapes, so a lookup is then one interpolation along m.
    _shapes: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_axes", tuple([math.log(v) for v in axis] for axis in (self.m, self.n, self.k)))
        object.__setattr__(self, "_cells", self.log_s.tolist())
        object.__setattr__(self, "_shapes", {})

    def covers(self, n: float, k: float) -> bool:
        return n >= self.n[0] and k >= self.k[0]

    @staticmethod
    def _locate(value: float, logs: list[float]) -> tuple[int, float, float]:
        """Grid cell, weight within it and scale beyond the grid's edge (the edge's time per unit of work)."""
        x = math.log(value)
        scale = 1.0
        if x > logs[-1]:
            scale = math.exp(x - logs[-1])
            x = logs[-1]
        i = min(max(bisect_right(logs, x) - 1, 0), len(logs) - 2)
        w = (x - logs[i]) / (logs[i + 1] - logs[i])
        return i, 0.0 if w < 0.0 else 1.0 if w > 1.0 else w, scale

    def _shape(self, n: float, k: float) -> tuple[list[float], float, float]:
        _, n_logs, k_logs = self._axes
        j, b, scale_n = self._locate(n, n_logs)
        l, c, scale_k = self._locate(k, k_logs)
        rows = []
        for plane in self._cells:
            row0, row1 = plane[j], plane[j + 1]
            lo = row0[l] * (1 - c) + row0[l + 1] * c
            hi = row1[l] * (1 - c) + row1[l + 1] * c
            rows.append(lo * (1 - b) + hi * b)
        found = (rows, scale_n, scale_k)
        self._shapes[(n, k)] = found
        return found

    def time(self, m: float, k: float, n: float) -> float:
        """Seconds for m tokens through a k x n weight (m, n, k may be fractional; m >= 1): trilinear in log-log,
        bilinear over (n, k) first."""
        found = self._shapes.get((n, k))
        rows, scale_n, scale_k = found if found is not None else self._shape(n, k)
        i, a, scale = self._locate(max(m, 1.0), self._axes[0])
        return math.exp(rows[i] * (1 - a) + rows[i + 1] * a) * (scale * scale_n * scale_k)


@cache
def load_gemm_tables(name: str) -> dict[str, GemmTable]:
    """precision ('bf16', 'fp8') -> table, from hardware/calibration/kernels/<name>.npz ({} when none ships)."""
    z = shipped(name, "gemm_m")
    if z is None:
        return {}
    return {dtype: GemmTable(z["gemm_m"], z["gemm_n"], z["gemm_k"], z[f"gemm_{dtype}_log_s"].astype(np.float64),
                             str(z["source"]))
            for dtype in ("bf16", "fp8") if f"gemm_{dtype}_log_s" in z}
