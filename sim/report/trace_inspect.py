"""What a trace holds, before anything is simulated: size, time span, rate over time, length distributions, prefix
sharing, sessions, models, and the measured latencies it carries; with a plotly HTML figure of the same."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from sim.workload.table import TraceTable

PERCENTILES = (50, 90, 99)


def _dist(values: pl.Series) -> dict[str, float]:
    v = values.drop_nulls().cast(pl.Float64).to_numpy()
    if not len(v):
        return {}
    out = {"mean": float(v.mean())}
    for p, x in zip(PERCENTILES, np.percentile(v, PERCENTILES)):
        out[f"p{p}"] = float(x)
    out["max"] = float(v.max())
    return out


def prefix_sharing(df: pl.DataFrame) -> float | None:
    """Share of prompt blocks whose hash an earlier request already had (what a perfect prefix cache reuses)."""
    if "prefix_hashes" not in df.columns:
        return None
    blocks = (df.select(pl.int_range(pl.len()).alias("row"), "prefix_hashes").explode("prefix_hashes")
              .drop_nulls("prefix_hashes"))
    if blocks.height == 0:
        return None
    first = blocks.group_by("prefix_hashes").agg(pl.col("row").min().alias("first"))
    reused = blocks.join(first, on="prefix_hashes").filter(pl.col("row") > pl.col("first")).height
    return reused / blocks.height


def rate_over_time(df: pl.DataFrame, bins: int = 100) -> tuple[np.ndarray, np.ndarray, float]:
    """(bin start times in s, requests per second in each bin, bin width in s)."""
    t = df["arrival_s"].to_numpy()
    span = float(t.max()) if len(t) else 0.0
    width = max(1.0, span / bins)
    counts, edges = np.histogram(t, bins=max(1, int(np.ceil(span / width)) or 1), range=(0.0, max(span, width)))
    return edges[:-1], counts / width, width


def inspect_trace(trace: TraceTable) -> dict[str, Any]:
    df = trace.table
    span = float(df["arrival_s"].max())
    _, rate, width = rate_over_time(df)
    out: dict[str, Any] = {
        "format": trace.fmt, "rows": df.height, "span_s": span,
        "mean_rate_rps": (df.height - 1) / span if span > 0 else None,
        "peak_rate_rps": float(rate.max()), "rate_bin_s": width,
        "input_tokens": _dist(df["input_tokens"]), "output_tokens": _dist(df["output_tokens"]),
        "prefix_sharing": prefix_sharing(df), "prefix_block_tokens": trace.block_tokens or None,
        "sessions": df["session_id"].n_unique() if "session_id" in df.columns else None,
        "models": (dict(df["model"].drop_nulls().value_counts(sort=True).head(10).iter_rows())
                   if "model" in df.columns and df["model"].is_not_null().any() else None),
        "measured": {c: _dist(df[c]) for c in trace.measured},
        "notes": trace.notes,
    }
    return out


def figure_html(trace: TraceTable, title: str) -> str:
    """One HTML page: rate over time, input and output length histograms, and the measured latencies if any."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    df = trace.table
    measured = trace.measured
    rows = 1 + -(-len(measured) // 3)  # the measured latencies three to a row under the trace's own panels
    fig = make_subplots(rows=rows, cols=3, subplot_titles=(
        "requests per second", "input tokens", "output tokens", *[f"measured {m}" for m in measured]))
    starts, rate, width = rate_over_time(df)
    fig.add_trace(go.Scatter(x=starts, y=rate, mode="lines", name=f"rate ({width:.0f} s bins)"), row=1, col=1)
    fig.add_trace(go.Histogram(x=df["input_tokens"].to_numpy(), nbinsx=60, name="input"), row=1, col=2)
    fig.add_trace(go.Histogram(x=df["output_tokens"].to_numpy(), nbinsx=60, name="output"), row=1, col=3)
    for i, m in enumerate(measured):
        fig.add_trace(go.Histogram(x=df[m].drop_nulls().to_numpy(), nbinsx=60, name=m), row=2 + i // 3,
                      col=1 + i % 3)
    fig.update_xaxes(title_text="time (s)", row=1, col=1)
    fig.update_layout(title=title, showlegend=False, height=420 * rows)
    return fig.to_html(include_plotlyjs="plotly.min.js", full_html=True)  # the folder's one copy of plotly.js
