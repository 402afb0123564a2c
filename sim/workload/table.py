"""The canonical request table every reader and generator produces (a polars DataFrame).

Columns: arrival_s (float, seconds from the first request), input_tokens (int), output_tokens (int), and optionally
prefix_hashes (list of int: one id per `prefix_block_tokens` tokens of the prompt; equal ids mean a shared prefix).
"""

from __future__ import annotations

import polars as pl

from sim.errors import FleetsimError

REQUIRED = ("arrival_s", "input_tokens", "output_tokens")


def validate(df: pl.DataFrame, origin: str) -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise FleetsimError(f"{origin}: request table lacks column(s) {', '.join(missing)}")
    if df.height == 0:
        raise FleetsimError(f"{origin}: no requests (empty trace or window)")
    for col in ("input_tokens", "output_tokens"):
        bad = df.with_row_index("row").filter(pl.col(col) < 1)
        if bad.height:
            row = bad["row"][0]
            raise FleetsimError(f"{origin}: row {row + 1}: field '{col}' must be >= 1, got {bad[col][0]}")
    return df.sort("arrival_s", maintain_order=True)


def window(df: pl.DataFrame, duration_s: float | None, num_requests: int | None) -> pl.DataFrame:
    """The requests arriving in the first `duration_s` seconds, at most `num_requests` of them."""
    if duration_s is not None:
        df = df.filter(pl.col("arrival_s") < df["arrival_s"][0] + duration_s)
    if num_requests is not None:
        df = df.head(num_requests)
    return df
