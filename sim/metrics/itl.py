"""Inter-token latencies without one array entry per token.

A request's output tokens are runs: a first token (a prefill completing at t0) followed by decode steps
first..last of its engine (`Request.lane`); consecutive runs (around a preemption) are joined by the gap between
them. Its inter-token latencies are therefore (1) one gap per run from t0 to the run's first decode step, (2) the
engine's step gaps ends[k] - ends[k-1] for k in first+1..last, and (3) one gap per preemption. Part (2) is almost all
of them and is shared: every request decoding in step k saw the same gap. So the pooled latencies are the engine's
step gaps, each weighted by the number of runs that decoded across it, plus parts (1) and (3): memory linear in
steps and runs, not in tokens (19.3M values for 100k requests before).

Per-request medians and maxima still need each request's own gaps; they are computed a bounded chunk of requests at
a time, so memory stays flat however long the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.serving.request import FINISHED, Request

CHUNK_GAPS = 1 << 22  # per-request statistics: at most about this many gaps materialised at once (32 MB of keys)


@dataclass(frozen=True)
class Weighted:
    """A multiset of latencies: `values` (sorted ascending, distinct or not) each seen `counts` times."""

    values: np.ndarray
    counts: np.ndarray

    @property
    def size(self) -> int:
        return int(self.counts.sum())

    def mean(self) -> float:
        # Not np.dot: a BLAS call wakes OpenBLAS's thread pool, whose threads then spin for CPU a while (0.1 s of a
        # 1,000-request run, and the other worker's core in a search).
        return float((self.values * self.counts).sum() / self.size)

    def max(self) -> float:
        return float(self.values[-1])

    def std(self) -> float:
        """Population standard deviation of the expanded multiset (np.std's default, as vLLM reports it)."""
        mean = self.mean()
        return float(np.sqrt((self.counts * (self.values - mean) ** 2).sum() / self.size))

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """np.percentile(expanded, qs) (its default 'linear' method) to the last bit, without expanding: the
        same virtual index, neighbours and interpolation (numpy/lib/_function_base_impl.py, _quantile and
        _lerp)."""
        n = self.size
        upper = np.cumsum(self.counts)  # the expanded array's index just past each value's copies
        virtual = (n - 1) * (np.asarray(qs, dtype=np.float64) / 100)
        below = np.floor(virtual)
        above = np.minimum(below + 1, n - 1)
        gamma = virtual - below
        a = self.values[np.searchsorted(upper, below.astype(np.int64), side="right")]
        b = self.values[np.searchsorted(upper, above.astype(np.int64), side="right")]
        diff = b - a
        out = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
        return [float(v) for v in out]

    def expand(self) -> np.ndarray:
        """Every latency as one array entry (for tests and small runs)."""
        return np.repeat(self.values, self.counts)


@dataclass(frozen=True)
class Runs:
    """Every emission run of every finished multi-token request, in request order, with engine steps numbered
    over all engines' concatenated step ends."""

    ends: np.ndarray  # all engines' decode step end times, concatenated
    req: np.ndarray  # the run's request (index into the request list)
    t0: np.ndarray  # its first token's time
    first: np.ndarray  # its first decode step (global index); first > last: a run without decode steps
    last: np.ndarray  # its last decode step

    @classmethod
    def of(cls, requests: Sequence[Request], decode_ends: Sequence[np.ndarray]) -> Runs:
        base = np.concatenate(([0], np.cumsum([len(e) for e in decode_ends]))).astype(np.int64)
        ends = np.concatenate(decode_ends) if decode_ends else np.zeros(0)
        runs = [(i, base[r.lane], run) for i, r in enumerate(requests) if r.state == FINISHED and r.output > 1
                for run in r.emit_runs]
        n = len(runs)
        req = np.fromiter((i for i, _, _ in runs), np.int64, n)
        off = np.fromiter((o for _, o, _ in runs), np.int64, n)
        t0 = np.fromiter((run[0] for _, _, run in runs), np.float64, n)
        first = off + np.fromiter((run[1] for _, _, run in runs), np.int64, n)
        last = off + np.fromiter((run[2] for _, _, run in runs), np.int64, n)
        return cls(ends, req, t0, first, last)

    def sliced(self, lo: int, hi: int) -> Runs:
        return Runs(self.ends, self.req[lo:hi], self.t0[lo:hi], self.first[lo:hi], self.last[lo:hi])

    def _prev_last(self, has_dec: np.ndarray) -> np.ndarray:
        """Each run's last token time: its last decode step's end, or t0 for a run without decode steps."""
        if not len(self.ends):
            return self.t0
        return np.where(has_dec, self.ends[np.maximum(self.last, 0)], self.t0)

    def singles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Gaps that are not shared step gaps: (1) each run's first decode after its prefill token and (3) each
        preemption's gap; as (values 1, their requests, values 3, their requests)."""
        has_dec = self.last >= self.first
        v1 = self.ends[self.first[has_dec]] - self.t0[has_dec]
        cont = self.req[1:] == self.req[:-1]
        v3 = self.t0[1:][cont] - self._prev_last(has_dec)[:-1][cont]
        return v1, self.req[has_dec], v3, self.req[1:][cont]

    def step_weights(self) -> np.ndarray:
        """How many runs decoded across each step gap: weight[k] counts runs with first < k <= last."""
        has_dec = self.last > self.first
        delta = np.zeros(len(self.ends) + 1, dtype=np.int64)
        np.add.at(delta, self.first[has_dec] + 1, 1)
        np.add.at(delta, self.last[has_dec] + 1, -1)
        return np.cumsum(delta[:-1])

    def gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """Every gap of these runs, materialised, with its request (parts 1, 2, 3 in that order)."""
        v1, g1, v3, g3 = self.singles()
        has_dec = self.last >= self.first
        idx = _concat_ranges(self.first[has_dec] + 1, self.last[has_dec] + 1)
        v2 = self.ends[idx] - self.ends[idx - 1]
        g2 = np.repeat(g1, (self.last - self.first)[has_dec])
        return np.concatenate((v1, v2, v3)), np.concatenate((g1, g2, g3))


def _concat_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]) without the Python loop."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def pooled(runs: Runs) -> Weighted:
    """Every inter-token latency of the run, as weighted step gaps plus the per-run gaps."""
    v1, _, v3, _ = runs.singles()
    weights = runs.step_weights()
    used = np.flatnonzero(weights)
    step_gaps = runs.ends[used] - runs.ends[used - 1]
    values = np.concatenate((step_gaps, v1, v3))
    counts = np.concatenate((weights[used], np.ones(len(v1) + len(v3), dtype=np.int64)))
    order = np.argsort(values, kind="stable")
    return Weighted(values[order], counts[order])


def per_request(runs: Runs, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each request's median and maximum inter-token latency (NaN for requests without one), computed a chunk of
    requests at a time (at most about CHUNK_GAPS gaps each)."""
    p50 = np.full(n, np.nan)
    mx = np.full(n, np.nan)
    if not len(runs.req):
        return p50, mx
    # Gaps a run contributes: its decode steps, plus one joining it to the run before it (a preemption).
    per_run = np.maximum(runs.last - runs.first + 1, 0) + np.concatenate(([0], runs.req[1:] == runs.req[:-1]))
    # Cut only where a request starts, so that no request's gaps are split across chunks.
    starts = np.flatnonzero(np.concatenate(([True], runs.req[1:] != runs.req[:-1])))
    before = np.concatenate(([0], np.cumsum(per_run)))[starts]
    # A chunk starts at the first request whose preceding gaps reach the next multiple of CHUNK_GAPS.
    block = before // CHUNK_GAPS
    cuts = np.flatnonzero(np.concatenate(([True], block[1:] != block[:-1])))
    bounds = [int(starts[c]) for c in cuts] + [len(runs.req)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        _median_and_max(*runs.sliced(lo, hi).gaps(), p50, mx)
    return p50, mx


def _median_and_max(itl: np.ndarray, group: np.ndarray, p50: np.ndarray, mx: np.ndarray) -> None:
    if not itl.size:
        return
    # One integer sort key per gap: its request, then the gap in whole nanoseconds. Sorting the keys alone is much
    # faster than a lexsort; medians and maxima are read back at nanosecond resolution.
    ns = np.minimum(np.rint(itl * 1e9), (1 << 40) - 1).astype(np.int64)
    key = np.sort((group.astype(np.int64) << 40) | ns)
    g = key >> 40
    v = (key & ((1 << 40) - 1)) * 1e-9
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    counts = np.diff(np.concatenate((starts, [len(g)])))
    who = g[starts]
    p50[who] = 0.5 * (v[starts + (counts - 1) // 2] + v[starts + counts // 2])
    mx[who] = v[starts + counts - 1]
