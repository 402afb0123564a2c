"""The canonical request table every reader and generator produces (a polars DataFrame).

Columns: arrival_s (float, seconds from the first request), input_tokens (int), output_tokens (int); where the
source knows them: request_id (int, the row's order in the source), session_id (str: a conversation, agent session
or program), prefix_hashes (list of int: one id per `block_tokens` tokens of the prompt; equal ids mean a shared
prefix), measured ttft_s / tpot_s / e2e_s and each request's median and longest inter-token gap itl_p50_s /
itl_max_s (float seconds), model (str), and line (the row's line in the file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from sim.core.checks import MAX_TOKENS
from sim.errors import FleetsimError
from sim.workload.badrows import SAMPLES, BadRows

REQUIRED = ("arrival_s", "input_tokens", "output_tokens")
OPTIONAL = {"request_id": pl.Int64, "session_id": pl.String, "prefix_hashes": pl.List(pl.Int64),
            "ttft_s": pl.Float64, "tpot_s": pl.Float64, "e2e_s": pl.Float64, "itl_p50_s": pl.Float64,
            "itl_max_s": pl.Float64, "model": pl.String, "line": pl.Int64}
MEASURED = ("ttft_s", "tpot_s", "e2e_s", "itl_p50_s", "itl_max_s")


@dataclass
class TraceTable:
    """A trace read into the canonical table, with what reading it did (rows dropped, rows sorted)."""

    table: pl.DataFrame
    fmt: str
    block_tokens: int = 0  # tokens per prefix hash (0: no hashes)
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> list[str]:
        """The measured latency columns the trace carries (with at least one value)."""
        return [c for c in MEASURED if c in self.table.columns and self.table[c].is_not_null().any()]


MAX_TIME_S = 1e11


def finish(df: pl.DataFrame, origin: str, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    """Check and order a reader's table: token counts >= 1 (bad rows otherwise), arrival times relative to the
    first request and in order (sorted, with a note, when the file is not), request_id in file order."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise FleetsimError(f"{origin}: request table lacks column(s) {', '.join(missing)}")
    if df.height == 0:
        raise FleetsimError(f"{origin}: no requests")
    if "request_id" not in df.columns:
        df = df.with_row_index("request_id").with_columns(pl.col("request_id").cast(pl.Int64))
    checks = [(col, (pl.col(col) < 1) | (pl.col(col) > MAX_TOKENS), f"an integer from 1 to {MAX_TOKENS:,}")
              for col in ("input_tokens", "output_tokens")]
    # A timestamp must be a finite time (seconds since an epoch at most: 1e11 s is 3,000 years), or the run's span
    # and rate would be meaningless.
    checks.append(("arrival_s", ~pl.col("arrival_s").is_finite() | (pl.col("arrival_s").abs() > MAX_TIME_S),
                   f"a finite time within {MAX_TIME_S:.0e} s"))
    for col, wrong, expected in checks:
        low = df.select(wrong.fill_null(True)).to_series()
        if low.any():
            rows = df.filter(low)
            # Readers keep each row's line in the file; a generated table has only its row number.
            lines = rows["line"] if "line" in rows.columns else rows["request_id"] + 1
            shown = 1 if not bad.skip else SAMPLES
            for line, value in zip(lines.head(shown), rows[col].head(shown)):
                bad.report(int(line), None, col, expected, value)
            bad.count += rows.height - min(shown, rows.height)
            df = df.filter(~low)
    if df.height == 0:
        raise FleetsimError(f"{origin}: no requests left ({bad.note()})")
    arrivals = df["arrival_s"]
    backwards = int((arrivals.diff() < 0).sum())
    if backwards:
        notes.append(f"timestamps out of order at {backwards:,} row(s): sorted by arrival time")
        df = df.sort("arrival_s", maintain_order=True)
    return df.with_columns(pl.col("arrival_s") - df["arrival_s"].min())


def validate(df: pl.DataFrame, origin: str) -> pl.DataFrame:
    """A generated or in-memory table: the required columns, token counts >= 1, sorted by arrival."""
    return finish(df, origin, BadRows(origin), [])


def window(df: pl.DataFrame, duration_s: float | None, num_requests: int | None) -> pl.DataFrame:
    """The requests arriving in the first `duration_s` seconds, at most `num_requests` of them."""
    if duration_s is not None:
        df = df.filter(pl.col("arrival_s") < df["arrival_s"][0] + duration_s)
    if num_requests is not None:
        df = df.head(num_requests)
    return df
