"""Predicted against measured latencies, request by request, for a trace that carries what its servers measured:
the error of each statistic (mean, p50, p90, p99) of TTFT, TPOT, E2E and, where the trace has each request's
inter-token gaps (vLLM benchmark results), of each request's median and longest gap; and a per-request scatter."""

from __future__ import annotations

import numpy as np
import polars as pl

from sim.errors import FleetsimError
from sim.workload.table import MEASURED

STATS = ("mean", "p50", "p90", "p99")


def paired(predicted: pl.DataFrame, trace: pl.DataFrame) -> pl.DataFrame:
    """One row per request that finished in the simulation and has a measurement: measured_* and predicted_*.
    Request i of the simulation is row i of the trace table it ran."""
    metrics = [m for m in MEASURED if m in trace.columns and trace[m].is_not_null().any()]
    if not metrics:
        raise FleetsimError("--compare: the trace carries no measured latencies (ttft/tpot/e2e/itl); formats with them: "
                            "vllm-bench, openai (with ttft_ms / latency_ms)")
    measured = trace.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("request_id"),
                            *[pl.col(m).alias(f"measured_{m}") for m in metrics])
    pred = predicted.filter(pl.col("status") == "finished").select(
        "request_id", *[pl.col(m).alias(f"predicted_{m}") for m in metrics])
    return measured.join(pred, on="request_id", how="inner")


def errors(pairs: pl.DataFrame) -> pl.DataFrame:
    """metric, statistic, measured, predicted, error (predicted / measured - 1), over the requests having both."""
    rows = []
    for m in MEASURED:
        if f"measured_{m}" not in pairs.columns:
            continue
        both = pairs.select(f"measured_{m}", f"predicted_{m}").drop_nulls()
        if both.height == 0:
            continue
        meas, pred = both[f"measured_{m}"].to_numpy(), both[f"predicted_{m}"].to_numpy()
        for stat in STATS:
            f = np.mean if stat == "mean" else (lambda v, q=float(stat[1:]): np.percentile(v, q))
            a, b = float(f(meas)), float(f(pred))
            rows.append({"metric": m.removesuffix("_s"), "statistic": stat, "measured_s": a, "predicted_s": b,
                         "error": b / a - 1.0 if a > 0 else None, "requests": both.height})
    return pl.DataFrame(rows, schema={"metric": pl.String, "statistic": pl.String, "measured_s": pl.Float64,
                                      "predicted_s": pl.Float64, "error": pl.Float64, "requests": pl.Int64})


def scatter_html(pairs: pl.DataFrame, title: str) -> str:
    """Per request: measured (x) against predicted (y), one panel per metric, with the y = x line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = [m for m in MEASURED if f"measured_{m}" in pairs.columns]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m.removesuffix("_s").upper() for m in metrics])
    for i, m in enumerate(metrics, 1):
        both = pairs.select("request_id", f"measured_{m}", f"predicted_{m}").drop_nulls()
        x, y = both[f"measured_{m}"].to_numpy(), both[f"predicted_{m}"].to_numpy()
        fig.add_trace(go.Scattergl(x=x, y=y, mode="markers", marker={"size": 4, "opacity": 0.5},
                                   text=[f"request {r}" for r in both["request_id"]], name=m), row=1, col=i)
        hi = float(max(x.max(), y.max())) if len(x) else 1.0
        fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", line={"dash": "dash", "color": "gray"},
                                 name="y = x"), row=1, col=i)
        fig.update_xaxes(title_text="measured (s)", row=1, col=i)
        fig.update_yaxes(title_text="predicted (s)", row=1, col=i)
    fig.update_layout(title=title, showlegend=False, height=460)
    # plotly.js is the one bundle the run's folder holds beside its pages (sim/report/search_report.py)
    return fig.to_html(include_plotlyjs="plotly.min.js", full_html=True)
