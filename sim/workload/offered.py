"""The offered rate a run keeps: `--rate R` offers R over the requests actually simulated.

fleetsim reports the offered rate as (n - 1) / (last arrival - first arrival). Sampled arrivals offer R only on
average (a 500-request Poisson run is off by about 4.5% either way), and a trace rescaled to R over its whole length
offers its local rate over the requests a run keeps (the first 500 requests of the Azure conversation trace arrive
at 0.7 times its mean rate). Both are fixed the same way: choose the requests first, then scale their arrival times
so that they span exactly (n - 1) / R seconds. For a Poisson process this is the process conditioned on the time of
its n-th arrival (given it, the earlier arrivals are uniform order statistics, which a scaling keeps); for a gamma
process or a trace it keeps the shape of the gaps (their burstiness), and only their unit changes.
"""

from __future__ import annotations

import math

import polars as pl



def at_rate(df: pl.DataFrame, rate: float) -> pl.DataFrame:
    """The requests with arrivals shifted to start at 0 and scaled to span (n - 1) / rate seconds."""
    if df.height < 2:
        return df.with_columns(pl.col("arrival_s") * 0.0)
    first, last = df["arrival_s"][0], df["arrival_s"][-1]
    span = last - first
    if not span > 0:  # all at once: no rate to keep
        return df.with_columns(pl.col("arrival_s") - first)
    return df.with_columns((pl.col("arrival_s") - first) * ((df.height - 1) / rate / span))


def count_at_rate(rate: float, num_requests: int | None, duration_s: float | None) -> int | None:
    """How many requests a run at `rate` keeps: `num_requests`, or those arriving within `duration_s` seconds at
    that rate (the window is cut in simulated time), whichever is fewer; None for all of them."""
    counts = []
    if num_requests is not None:
        counts.append(num_requests)
    if duration_s is not None and math.isfinite(duration_s):
        counts.append(max(1, math.ceil(rate * duration_s - 1e-9)))  # as many as arrive in [0, D) at R
    return min(counts) if counts else None
