"""Prefill attention latency from measured (batch, sequence length) grids, one per head shape, with no window or
under one sliding window.

The measurements time FlashAttention over `b` fresh sequences of `s` tokens each for a head shape (query heads,
KV heads, head dim) on one GPU. A chunk after cached context counts as the fresh sequence with as many (query, key)
pairs; how a step's chunks of unequal lengths are read together is IterationCost._table_prefill's (monotone bounds
that are the grid's own time on equal chunks). The head shape is the measured one with the same head dim and the
nearest query and KV head counts, its time scaled by the ratio of query heads (the work). Inside the grid the
latency is interpolated in log-log space; beyond it, scaled by the work added.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from sim.cost.kernels.shipped import shipped


@dataclass(frozen=True)
class AttentionTable:
    configs: np.ndarray  # [C, 3]: query heads, KV heads, head dim
    b: np.ndarray  # batch sizes, ascending
    s: np.ndarray  # sequence lengths, ascending
    log_s: np.ndarray  # [C, len(b), len(s)] natural log of seconds
    source: str
    # Beyond the longest measured length, time grows as length ** this: the square for full attention (pairs grow
    # with it), linearly under a sliding window (each query sees at most the window).
    length_power: float = 2.0
    _logb: list = field(init=False, repr=False, compare=False)
    _logs: list = field(init=False, repr=False, compare=False)
    _cells: list = field(init=False, repr=False, compare=False)
    _amortized: list = field(init=False, repr=False, compare=False)
    _pick: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_logb", [math.log(v) for v in self.b])
        object.__setattr__(self, "_logs", [math.log(v) for v in self.s])
        object.__setattr__(self, "_cells", self.log_s.tolist())
        # Per head shape and length: the log of the least time per sequence over the measured batches.
        per_seq = self.log_s - np.log(self.b)[None, :, None]
        object.__setattr__(self, "_amortized", per_seq.min(axis=1).tolist())
        object.__setattr__(self, "_pick", {})

    def config(self, heads: int, kv_heads: int, head_dim: int) -> tuple[int, float]:
        """The measured head shape to use, and the factor its time is scaled by (query heads' ratio)."""
        key = (heads, kv_heads, head_dim)
        found = self._pick.get(key)
        if found is None:
            dims = np.unique(self.configs[:, 2])
            d = dims[np.argmin(np.abs(np.log(dims / head_dim)))]
            rows = np.flatnonzero(self.configs[:, 2] == d)
            distance = (np.abs(np.log(self.configs[rows, 0] / heads))
                        + np.abs(np.log(self.configs[rows, 1] / max(kv_heads, 1))))
            i = int(rows[np.argmin(distance)])
            found = (i, heads / float(self.configs[i, 0]) * head_dim / float(d))
            self._pick[key] = found
        return found

    @staticmethod
    def _locate(value: float, logs: list, power: float) -> tuple[int, float, float]:
        """Where `value` falls on a log axis: the cell's lower index, the weight of its upper point, and the factor
        its time grows by beyond the axis's end (as value ** power)."""
        x = math.log(max(value, 1.0))
        grow = 1.0
        if x > logs[-1]:
            grow = math.exp((x - logs[-1]) * power)
            x = logs[-1]
        i = min(max(bisect_right(logs, x) - 1, 0), len(logs) - 2)
        w = (x - logs[i]) / (logs[i + 1] - logs[i])
        return i, 0.0 if w < 0.0 else 1.0 if w > 1.0 else w, grow

    def time(self, heads: int, kv_heads: int, head_dim: int, batch: float, seq: float) -> float:
        """Seconds for `batch` fresh sequences of `seq` tokens (fractional allowed) through one attention layer."""
        c, scale = self.config(heads, kv_heads, head_dim)
        i, a, grow_b = self._locate(batch, self._logb, 1.0)
        j, w, grow_s = self._locate(seq, self._logs, self.length_power)
        grid = self._cells[c]
        lo = grid[i][j] * (1 - w) + grid[i][j + 1] * w
        hi = grid[i + 1][j] * (1 - w) + grid[i + 1][j + 1] * w
        return math.exp(lo * (1 - a) + hi * a) * scale * grow_b * grow_s

    def per_sequence(self, heads: int, kv_heads: int, head_dim: int, seq: float) -> float:
        """Seconds per fresh sequence of `seq` tokens in the measured batch that runs them cheapest per sequence:
        what each sequence adds, at least, to a large batch."""
        c, scale = self.config(heads, kv_heads, head_dim)
        j, w, grow = self._locate(seq, self._logs, self.length_power)
        row = self._amortized[c]
        return math.exp(row[j] * (1 - w) + row[j + 1] * w) * scale * grow


@cache
def load_attention_table(name: str, window: int = 0) -> AttentionTable | None:
    """The measured prefill grids of GPU `name`: full attention (window 0) or one sliding window's; None where that
    was not measured."""
    z = shipped(name, "attn_configs")
    if z is None:
        return None
    if not window:
        return AttentionTable(z["attn_configs"], z["attn_b"], z["attn_s"], z["attn_log_s"].astype(np.float64),
                              str(z["source"]))
    key = f"attnw{int(window)}_"
    if window != int(window) or f"{key}configs" not in z:
        return None
    return AttentionTable(z[f"{key}configs"], z[f"{key}b"], z[f"{key}s"], z[f"{key}log_s"].astype(np.float64),
                          f"{z['source']}, window {int(window)}", 1.0)
