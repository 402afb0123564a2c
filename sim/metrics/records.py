"""Per-request records, collected column-wise once the run is over (vLLM benchmark names)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import numpy as np
import polars as pl

from sim.serving.request import FINISHED, REJECTED, Request


def emission_times(r: Request, decode_ends: np.ndarray) -> np.ndarray:
    """Times at which the request's output tokens were produced (for inspection; the table is vectorised)."""
    parts = []
    for t0, first, last in r.emit_runs:
        parts.append(np.array([t0]))
        if last >= first:
            parts.append(decode_ends[first:last + 1])
    return np.concatenate(parts) if parts else np.zeros(0)


def _concat_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]) without the Python loop."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def inter_token_latencies(requests: Sequence[Request], decode_ends: Sequence[np.ndarray]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Every inter-token latency of every finished request, and the index of its request in `requests`.

    A run of emissions is its first token (a prefill completing at t0) followed by decode steps first..last of its
    engine (`Request.lane`); consecutive runs (around a preemption) are joined by the gap between them."""
    base = np.concatenate(([0], np.cumsum([len(e) for e in decode_ends])))
    ends = np.concatenate(decode_ends) if decode_ends else np.zeros(0)
    runs = [(i, base[r.lane], run) for i, r in enumerate(requests) if r.state == FINISHED and r.output > 1
            for run in r.emit_runs]
    if not runs:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    req_a = np.fromiter((i for i, _, _ in runs), np.int64, len(runs))
    off = np.fromiter((o for _, o, _ in runs), np.int64, len(runs))
    t0_a = np.fromiter((run[0] for _, _, run in runs), np.float64, len(runs))
    first_a = off + np.fromiter((run[1] for _, _, run in runs), np.int64, len(runs))
    last_a = off + np.fromiter((run[2] for _, _, run in runs), np.int64, len(runs))
    has_dec = last_a >= first_a
    # 1) the first decode token of a run, after the run's prefill token
    v1 = ends[first_a[has_dec]] - t0_a[has_dec]
    g1 = req_a[has_dec]
    # 2) later decode tokens of a run: consecutive decode step ends
    idx = _concat_ranges(first_a[has_dec] + 1, last_a[has_dec] + 1)
    v2 = ends[idx] - ends[idx - 1]
    g2 = np.repeat(g1, (last_a - first_a)[has_dec])
    # 3) the gap across a preemption: a run's first token after the previous run's last token
    prev_last = np.where(has_dec, ends[np.maximum(last_a, 0)] if len(ends) else t0_a, t0_a)
    cont = req_a[1:] == req_a[:-1]
    v3 = t0_a[1:][cont] - prev_last[:-1][cont]
    g3 = req_a[1:][cont]
    return np.concatenate((v1, v2, v3)), np.concatenate((g1, g2, g3))


def request_table(requests: Sequence[Request], decode_ends: Sequence[np.ndarray]) -> tuple[pl.DataFrame, np.ndarray]:
    """The per-request table and every inter-token latency pooled (for ITL percentiles)."""
    n = len(requests)
    itl, group = inter_token_latencies(requests, decode_ends)
    itl_p50 = np.full(n, np.nan)
    itl_max = np.full(n, np.nan)
    if itl.size:
        # One integer sort key per gap: its request, then the gap in whole nanoseconds. Sorting the keys alone is
        # much faster than a lexsort; medians and maxima are read back at nanosecond resolution.
        ns = np.minimum(np.rint(itl * 1e9), (1 << 40) - 1).astype(np.int64)
        key = np.sort((group.astype(np.int64) << 40) | ns)
        g = key >> 40
        v = (key & ((1 << 40) - 1)) * 1e-9
        starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
        counts = np.diff(np.concatenate((starts, [len(g)])))
        who = g[starts]
        itl_p50[who] = 0.5 * (v[starts + (counts - 1) // 2] + v[starts + counts // 2])
        itl_max[who] = v[starts + counts - 1]
    fields = ("rid", "replica", "state", "arrival", "prompt", "output", "first_scheduled", "first_token_time",
              "finish_time", "preemptions", "prefix_hit_tokens", "lookup_tokens", "program", "turn")
    cols = dict(zip(fields, zip(*map(attrgetter(*fields), requests)))) if n else {f: () for f in fields}
    names = {FINISHED: "finished", REJECTED: "rejected"}
    df = pl.DataFrame({
        "request_id": cols["rid"],
        "replica": cols["replica"],
        "status": [names.get(state, "unfinished") for state in cols["state"]],
        "arrival_s": cols["arrival"],
        "input_tokens": cols["prompt"],
        "output_tokens": cols["output"],
        "first_scheduled_s": cols["first_scheduled"],
        "first_token_s": cols["first_token_time"],
        "finish_s": cols["finish_time"],
        "preemptions": cols["preemptions"],
        "prefix_hit_tokens": cols["prefix_hit_tokens"],
        "prefix_lookup_tokens": cols["lookup_tokens"],
        "program": cols["program"],
        "turn": cols["turn"],
        "itl_p50_s": itl_p50,
        "itl_max_s": itl_max,
    }, schema_overrides={"request_id": pl.Int64, "replica": pl.Int64, "arrival_s": pl.Float64,
                         "input_tokens": pl.Int64, "output_tokens": pl.Int64, "first_scheduled_s": pl.Float64,
                         "first_token_s": pl.Float64, "finish_s": pl.Float64, "preemptions": pl.Int64,
                         "prefix_hit_tokens": pl.Int64, "prefix_lookup_tokens": pl.Int64, "program": pl.Int64,
                         "turn": pl.Int64})
    done = pl.col("status") == "finished"
    df = df.with_columns(
        pl.when(done).then(pl.col("first_scheduled_s") - pl.col("arrival_s")).alias("queue_delay_s"),
        pl.when(done).then(pl.col("first_token_s") - pl.col("arrival_s")).alias("ttft_s"),
        pl.when(done & (pl.col("output_tokens") > 1))
        .then((pl.col("finish_s") - pl.col("first_token_s")) / (pl.col("output_tokens") - 1)).alias("tpot_s"),
        pl.when(done).then(pl.col("finish_s") - pl.col("arrival_s")).alias("e2e_s"),
    )
    return df, itl
