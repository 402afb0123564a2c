"""Per-request records, collected column-wise once the run is over (vLLM benchmark names)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import numpy as np
import polars as pl

from sim.metrics.itl import Runs, Weighted, per_request, pooled
from sim.serving.request import FINISHED, REJECTED, Request


def emission_times(r: Request, decode_ends: np.ndarray) -> np.ndarray:
    """Times at which the request's output tokens were produced (for inspection; the table is vectorised)."""
    parts = []
    for t0, first, last in r.emit_runs:
        parts.append(np.array([t0]))
        if last >= first:
            parts.append(decode_ends[first:last + 1])
    return np.concatenate(parts) if parts else np.zeros(0)


def request_table(requests: Sequence[Request], decode_ends: Sequence[np.ndarray]) -> tuple[pl.DataFrame, Weighted]:
    """The per-request table and every inter-token latency pooled (weighted step gaps, for ITL percentiles)."""
    n = len(requests)
    runs = Runs.of(requests, decode_ends)
    itl_p50, itl_max = per_request(runs, n)
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
    return df, pooled(runs)
