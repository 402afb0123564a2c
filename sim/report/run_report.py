"""A run's report.html, written beside its Parquet by `run --out`: latency CDFs (TTFT, TPOT, ITL, E2E), each
replica's queue, batch, KV use and GPU power over time, throughput over time; for agent runs the JCT CDF, a
timeline of jobs (LLM calls and the tool pauses between them) and the KV each job held while its tools ran. plotly.js is one file beside it (offline).

Queue length and batch size are counted from the request table: a request waits from its arrival to its first
scheduling and runs from then to its finish (a preempted request is counted as running while it waits again).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import polars as pl

from sim.metrics.itl import Weighted
from sim.report.search_report import PLOTLY_BUNDLE

MAX_REPLICAS = 8  # replicas drawn over time (a large fleet's first ones; the table holds them all)
MAX_JOBS = 40  # agent jobs drawn on the timeline
POINTS = 1000  # points per curve at most: a page of a million-request run stays a few MB


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.sort(values[~np.isnan(values)])
    if len(v) > POINTS:
        q = np.linspace(0.0, 1.0, POINTS)
        return np.quantile(v, q), q
    return v, np.arange(1, len(v) + 1) / max(len(v), 1)


def _weighted_cdf(w: Weighted | None) -> tuple[np.ndarray, np.ndarray]:
    if w is None or w.size == 0:
        return np.zeros(0), np.zeros(0)
    if len(w.values) > POINTS:
        q = np.linspace(0.0, 100.0, POINTS)
        return np.array(w.percentiles(q)), q / 100.0
    return w.values, np.cumsum(w.counts) / w.size


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most about POINTS points of a series, keeping each stretch's highest value (peaks stay visible)."""
    if len(x) <= POINTS:
        return x, y
    k = -(-len(x) // POINTS)
    n = len(x) // k * k
    keep = np.arange(0, n, k) + np.argmax(y[:n].reshape(-1, k), axis=1)
    return x[keep], y[keep]


def _latencies(requests: pl.DataFrame, itl: Weighted | None) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fin = requests.filter(pl.col("status") == "finished")
    fig = make_subplots(rows=1, cols=4, subplot_titles=("TTFT", "TPOT", "ITL (every gap)", "E2E latency"))
    curves = [_cdf(fin[c].cast(pl.Float64).fill_null(np.nan).to_numpy()) for c in ("ttft_s", "tpot_s")]
    curves += [_weighted_cdf(itl), _cdf(fin["e2e_s"].cast(pl.Float64).fill_null(np.nan).to_numpy())]
    for i, (x, y) in enumerate(curves, 1):
        fig.add_trace(go.Scatter(x=x * 1e3, y=y, mode="lines", name=fig.layout.annotations[i - 1].text),
                      row=1, col=i)
        fig.update_xaxes(title_text="ms", type="log" if len(x) and x.min() > 0 else "linear", row=1, col=i)
    fig.update_yaxes(title_text="fraction of requests", row=1, col=1)
    fig.update_layout(title="Latency CDFs", showlegend=False, height=360)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id="latency-cdfs")


def _counts(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many intervals [start, end) are open after each event time."""
    times = np.concatenate((starts, ends))
    steps = np.concatenate((np.ones(len(starts)), -np.ones(len(ends))))
    order = np.argsort(times, kind="stable")
    return times[order], np.cumsum(steps[order])


def _over_time(requests: pl.DataFrame, timeline: pl.DataFrame) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.05,
                        subplot_titles=("waiting requests", "running requests (batch)", "KV cache used (fraction)",
                                        "power per GPU (W)"))
    replicas = sorted(timeline["replica"].unique().to_list())[:MAX_REPLICAS] if timeline.height else []
    started = requests.filter(pl.col("first_scheduled_s") >= 0)
    for rep in replicas:
        mine = started.filter(pl.col("replica") == rep)
        arrival = mine["arrival_s"].to_numpy()
        sched = mine["first_scheduled_s"].to_numpy()
        done = mine["finish_s"].to_numpy()
        done = np.where(done >= 0, done, np.inf)
        for row, (a, b) in enumerate(((arrival, sched), (sched, done)), 1):
            t, n = _thin(*_counts(a, b[np.isfinite(b)]))
            fig.add_trace(go.Scatter(x=t, y=n, mode="lines", line_shape="hv", name=f"replica {rep}",
                                     legendgroup=str(rep), showlegend=row == 1), row=row, col=1)
        tl = timeline.filter(pl.col("replica") == rep)
        x, y = _thin(tl["time_s"].to_numpy(), tl["kv_used_fraction"].to_numpy())
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"replica {rep}", legendgroup=str(rep),
                                 showlegend=False), row=3, col=1)
        if "power_w_per_gpu" in tl.columns:
            x, y = _thin(tl["time_s"].to_numpy(), tl["power_w_per_gpu"].to_numpy())
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"replica {rep}", legendgroup=str(rep),
                                     showlegend=False), row=4, col=1)
    fig.update_xaxes(title_text="time (s)", row=4, col=1)
    shown = f" (the first {len(replicas)} replicas)" if timeline.height and \
        timeline["replica"].n_unique() > len(replicas) else ""
    fig.update_layout(title=f"Each replica over time{shown}", height=900)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id="over-time")


def _throughput(requests: pl.DataFrame) -> str:
    import plotly.graph_objects as go

    fin = requests.filter(pl.col("status") == "finished")
    fig = go.Figure()
    if fin.height:
        t = fin["finish_s"].to_numpy()
        span = max(float(t.max() - requests["arrival_s"].min()), 1e-9)
        width = max(span / 60, 1e-3)
        edges = np.arange(float(requests["arrival_s"].min()), float(t.max()) + width, width)
        tokens, _ = np.histogram(t, bins=edges, weights=fin["output_tokens"].to_numpy())
        done, _ = np.histogram(t, bins=edges)
        fig.add_trace(go.Bar(x=edges[:-1], y=tokens / width, name="output tokens/s", width=width))
        fig.add_trace(go.Scatter(x=edges[:-1], y=done / width, name="requests/s", yaxis="y2", mode="lines"))
        fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "requests/s"})
    fig.update_layout(title="Throughput over time (by completion)", xaxis_title="time (s)",
                      yaxis_title="output tokens/s", height=360)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id="throughput")


def _agents(requests: pl.DataFrame, jobs: pl.DataFrame) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, column_widths=[0.25, 0.5, 0.25],
                        subplot_titles=("JCT CDF", f"jobs over time (the first {MAX_JOBS}): calls and tool pauses",
                                        "KV held during tool calls (GB x s per GPU)"))
    done = jobs.filter(~pl.col("failed")) if "failed" in jobs.columns else jobs
    x, y = _cdf(done["jct_s"].cast(pl.Float64).to_numpy())
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="JCT"), row=1, col=1)
    fig.update_xaxes(title_text="seconds", row=1, col=1)
    calls = requests.filter(pl.col("program") >= 0).sort(["program", "turn"])
    programs = sorted(calls["program"].unique().to_list())[:MAX_JOBS]
    for kind, color in (("LLM call", "#1f77b4"), ("tool pause", "#ff7f0e")):
        xs, ys = [], []
        for p in programs:
            mine = calls.filter(pl.col("program") == p)
            starts, ends = mine["arrival_s"].to_numpy(), mine["finish_s"].to_numpy()
            pairs = zip(starts, ends) if kind == "LLM call" else zip(ends[:-1], starts[1:])
            for a, b in pairs:
                xs += [a, b, None]
                ys += [p, p, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"width": 6 if kind == "LLM call" else 2,
                                                                  "color": color}, name=kind), row=1, col=2)
    fig.update_xaxes(title_text="time (s)", row=1, col=2)
    fig.update_yaxes(title_text="job", row=1, col=2)
    if "kv_pinned_gb_s" in jobs.columns:
        shown = jobs.filter(pl.col("program").is_in(programs)).sort("program")
        fig.add_trace(go.Bar(x=shown["kv_pinned_gb_s"].to_list(), y=shown["program"].to_list(), orientation="h",
                             name="KV held"), row=1, col=3)
        fig.update_yaxes(title_text="job", row=1, col=3)
    fig.update_layout(title="Agent jobs", height=420)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id="agents")


def report_html(title: str, summary: dict[str, Any], requests: pl.DataFrame, timeline: pl.DataFrame,
                itl: Weighted | None, jobs: pl.DataFrame | None = None) -> str:
    keys = [("requests finished", "num_finished", ""), ("request throughput (req/s)", "throughput_rps", ""),
            ("output tokens/s", "output_tokens_per_s", ""), ("p90 TTFT (ms)", "ttft_p90_s", "ms"),
            ("p90 TPOT (ms)", "tpot_p90_s", "ms"), ("SLO attainment", "slo_attainment", ""),
            ("J per output token", "joules_per_output_token", ""), ("$ per million output tokens", "usd_per_mtok", "")]
    if "jct_mean_s" in summary:
        keys.append(("mean JCT (s)", "jct_mean_s", ""))
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{_fmt(summary.get(key), unit)}</td></tr>" for label, key, unit in keys)
    parts = [_latencies(requests, itl), _over_time(requests, timeline), _throughput(requests)]
    if jobs is not None and jobs.height:
        parts.append(_agents(requests, jobs))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script src="{PLOTLY_BUNDLE}"></script>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ddd;padding:2px 8px;text-align:left}}
</style></head>
<body><h1>{html.escape(title)}</h1><table>{rows}</table>
{''.join(parts)}
<p><small>Waiting and running counts come from the request table (a preempted request counts as running while it
waits again); power is each GPU's average draw over each step (between steps: the card's idle power).</small></p>
</body></html>
"""


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1e3:,.1f}"
    return f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
