"""Decode attention latency from measured (batch, KV length) grids, one per head shape and KV-cache precision.

The measurements time one decode step of vLLM's attention kernel (FlashAttention 3 on Hopper, FlashInfer's TRT-LLM
decode on Blackwell) over `b` sequences of `s` cached tokens
each. Below a few thousand cached tokens a step costs a floor that grows with the batch (launch, per-sequence block
tables); above it the time is the KV bytes read, linear in b x s. So the grid is interpolated linearly in b and in
s (not log-log): exact at the measured points and linear between them, as the bandwidth-bound part is. Past the
longest measured length it extends the last segment's slope; past the largest batch it scales with the batch.

A step of n decodes whose KV lengths sum to K is priced as n sequences of K / n tokens each: in the bandwidth-bound
part only the sum matters, and near the floor the lengths barely do. For one n the cost is a piecewise-linear
function of K (`Piecewise`), which the simulator's closed forms evaluate one step or a whole run at a time.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from sim.cost.kernels.shipped import shipped

KV_DTYPES = ("bf16", "fp8")  # the code in the table's configs[:, 3]


class Piecewise:
    """y(x) linear between knots, extended by the end segments' slopes; the scalar and array forms give identical
    floats (the same operations in the same order), so stepping and fast-forward agree to the bit."""

    __slots__ = ("xs", "ys", "sl", "_xs", "_ys", "_sl", "_inner", "_inner_np")

    def __init__(self, xs: np.ndarray, ys: np.ndarray) -> None:
        self._xs = np.asarray(xs, dtype=np.float64)
        self._ys = np.asarray(ys, dtype=np.float64)
        self._sl = np.diff(self._ys) / np.diff(self._xs)
        self.xs, self.ys, self.sl = self._xs.tolist(), self._ys.tolist(), self._sl.tolist()
        # Searching the interior knots gives the segment directly: the first below xs[1], the last from xs[-2] on.
        self._inner_np = self._xs[1:-1]
        self._inner = self._inner_np.tolist()

    def at(self, x: float) -> float:
        j = bisect_right(self._inner, x)
        return self.ys[j] + self.sl[j] * (x - self.xs[j])

    def at_many(self, x: np.ndarray) -> np.ndarray:
        j = np.searchsorted(self._inner_np, x, side="right")
        return self._ys[j] + self._sl[j] * (x - self._xs[j])


@dataclass(frozen=True)
class DecodeAttentionTable:
    configs: np.ndarray  # [C, 5]: query heads, KV heads, head dim, KV dtype code (KV_DTYPES), window (0: full)
    b: np.ndarray  # batch sizes, ascending
    s: np.ndarray  # cached tokens per sequence, ascending
    log_s: np.ndarray  # [C, len(b), len(s)] natural log of seconds per layer
    source: str
    _pick: dict = field(init=False, repr=False, compare=False)
    _grids: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pick", {})
        object.__setattr__(self, "_grids", {})

    def has_window(self, window: int) -> bool:
        """Whether decode over this sliding window was measured."""
        return bool(np.any(self.configs[:, 4] == window))

    def config(self, heads: int, kv_heads: int, head_dim: int, kv_dtype: str, window: int = 0) -> tuple[int, float]:
        """The measured shape to use (same KV precision and window, nearest head dim, then nearest head counts) and
        the factor its time is scaled by: the KV bytes read per token, which set the bandwidth-bound part."""
        code = KV_DTYPES.index(kv_dtype) if kv_dtype in KV_DTYPES else 0
        key = (heads, kv_heads, head_dim, code, window)
        found = self._pick.get(key)
        if found is None:
            rows = np.flatnonzero((self.configs[:, 3] == code) & (self.configs[:, 4] == window))
            dims = np.unique(self.configs[rows, 2])
            d = dims[np.argmin(np.abs(np.log(dims / head_dim)))]
            rows = rows[self.configs[rows, 2] == d]
            distance = (np.abs(np.log(self.configs[rows, 0] / heads))
                        + np.abs(np.log(self.configs[rows, 1] / max(kv_heads, 1))))
            i = int(rows[np.argmin(distance)])
            found = (i, max(kv_heads, 1) * head_dim / float(self.configs[i, 1] * d))
            self._pick[key] = found
        return found

    def curve(self, heads: int, kv_heads: int, head_dim: int, kv_dtype: str, n: int, window: int = 0) -> Piecewise:
        """Seconds per layer for n decodes as a function of their summed KV length (the whole length: a windowed
        kernel's grid holds what it costs to skip the tokens outside the window)."""
        c, scale = self.config(heads, kv_heads, head_dim, kv_dtype, window)
        grid = self._grids.get(c)
        if grid is None:
            grid = self._grids[c] = np.exp(self.log_s[c])  # [b, s]
        b = self.b
        if n >= b[-1]:
            row = grid[-1] * (n / b[-1])
        else:
            i = min(max(int(np.searchsorted(b, n, side="right")) - 1, 0), len(b) - 2)
            w = (n - b[i]) / (b[i + 1] - b[i])
            row = grid[i] * (1.0 - w) + grid[i + 1] * w
        return Piecewise(self.s * n, row * scale)

    def time(self, heads: int, kv_heads: int, head_dim: int, kv_dtype: str, n: int, kv_sum: float,
             window: int = 0) -> float:
        return self.curve(heads, kv_heads, head_dim, kv_dtype, n, window).at(kv_sum)


@cache
def load_decode_attention_table(name: str) -> DecodeAttentionTable | None:
    z = shipped(name, "gen_configs")
    if z is None:
        return None
    return DecodeAttentionTable(z["gen_configs"], z["gen_b"], z["gen_s"], z["gen_log_s"].astype(np.float64),
                                str(z["source"]))
