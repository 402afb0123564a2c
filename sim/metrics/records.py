"""Per-request records, collected column-wise once the run is over (vLLM benchmark names)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from sim.serving.request import FINISHED, REJECTED, Request


def emission_times(r: Request, decode_ends: np.ndarray) -> np.ndarray:
    """Times at which the request's output tokens were produced."""
    parts = []
    for t0, first, last in r.emit_runs:
        parts.append(np.array([t0]))
        if last >= first:
            parts.append(decode_ends[first:last + 1])
    return np.concatenate(parts) if parts else np.zeros(0)


def request_table(requests: Sequence[Request], decode_ends: Sequence[np.ndarray]) -> tuple[pl.DataFrame, np.ndarray]:
    """The per-request table and every inter-token latency pooled (for ITL percentiles)."""
    n = len(requests)
    itl_p50 = np.full(n, np.nan)
    itl_max = np.full(n, np.nan)
    pooled: list[np.ndarray] = []
    for i, r in enumerate(requests):
        if r.state != FINISHED or r.output < 2:
            continue
        itl = np.diff(emission_times(r, decode_ends[r.replica]))
        if itl.size:
            itl_p50[i] = np.median(itl)
            itl_max[i] = itl.max()
            pooled.append(itl)
    col = lambda attr: [getattr(r, attr) for r in requests]  # noqa: E731
    status = ["finished" if r.state == FINISHED else "rejected" if r.state == REJECTED else "unfinished"
              for r in requests]
    df = pl.DataFrame({
        "request_id": col("rid"),
        "replica": col("replica"),
        "status": status,
        "arrival_s": col("arrival"),
        "input_tokens": col("prompt"),
        "output_tokens": col("output"),
        "first_scheduled_s": col("first_scheduled"),
        "first_token_s": col("first_token_time"),
        "finish_s": col("finish_time"),
        "preemptions": col("preemptions"),
        "prefix_hit_tokens": col("prefix_hit_tokens"),
        "itl_p50_s": itl_p50,
        "itl_max_s": itl_max,
    }, schema_overrides={"arrival_s": pl.Float64, "first_scheduled_s": pl.Float64, "first_token_s": pl.Float64,
                         "finish_s": pl.Float64})
    done = pl.col("status") == "finished"
    df = df.with_columns(
        pl.when(done).then(pl.col("first_scheduled_s") - pl.col("arrival_s")).alias("queue_delay_s"),
        pl.when(done).then(pl.col("first_token_s") - pl.col("arrival_s")).alias("ttft_s"),
        pl.when(done & (pl.col("output_tokens") > 1))
        .then((pl.col("finish_s") - pl.col("first_token_s")) / (pl.col("output_tokens") - 1)).alias("tpot_s"),
        pl.when(done).then(pl.col("finish_s") - pl.col("arrival_s")).alias("e2e_s"),
    )
    return df, (np.concatenate(pooled) if pooled else np.zeros(0))
