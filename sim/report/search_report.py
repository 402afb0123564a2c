"""A search's report: one HTML page (plotly, offline: the plotly bundle sits beside it, once per folder) with the
answer, the cost-latency front of every plan (hover for its details) with the SLO lines, the winner's latency CDFs
against the runner-up's, and the ranked table."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import polars as pl

PLOTLY_BUNDLE = "plotly.min.js"
HOVER = ("plan", "num_gpus", "max_num_seqs", "max_num_batched_tokens", "meets_slo", "slo_misses", "goodput_per_gpu",
         "capacity_rps", "ttft_p90_s", "tpot_p90_s", "hourly_usd", "cost_per_mtok_usd", "joules_per_output_token")
TABLE = ("rank", "plan", "num_gpus", "max_num_seqs", "max_num_batched_tokens", "meets_slo", "capacity_rps",
         "goodput_per_gpu", "output_tokens_per_s_per_gpu", "ttft_p90_s", "tpot_p90_s", "hourly_usd",
         "cost_per_mtok_usd", "joules_per_output_token", "slo_misses", "status", "reason")


def plotly_bundle() -> str:
    """plotly.js itself, written once beside the report so that it opens without a network."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _front(table: pl.DataFrame, slo: dict[str, float]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ok = table.filter(pl.col("status") == "ok")
    cost_col = "hourly_usd" if ok["hourly_usd"].n_unique() > 1 or "num_gpus" not in ok.columns else "num_gpus"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("p90 TPOT", "p90 TTFT"), horizontal_spacing=0.08)
    hover = [c for c in HOVER if c in ok.columns]
    template = "<br>".join(f"{c}: %{{customdata[{i}]}}" for i, c in enumerate(hover)) + "<extra></extra>"
    for col, (metric, target) in enumerate((("tpot_p90_s", slo["tpot_s"]), ("ttft_p90_s", slo["ttft_s"])), start=1):
        for meets, name, symbol in ((True, "meets the SLOs", "circle"), (False, "misses an SLO", "x")):
            part = ok.filter(pl.col("meets_slo") == meets)
            if not part.height:
                continue
            fig.add_trace(go.Scatter(
                x=part[cost_col].to_list(), y=(part[metric] * 1e3).to_list(), mode="markers", name=name,
                marker={"symbol": symbol, "size": [12 if p else 7 for p in part["pareto"].to_list()]},
                customdata=part.select(hover).rows(), hovertemplate=template, legendgroup=name,
                showlegend=col == 1), row=1, col=col)
        fig.add_hline(y=target * 1e3, line_dash="dash", annotation_text="SLO", row=1, col=col)
        fig.update_yaxes(title_text=f"{metric[:4].upper()} p90 (ms)", type="log", row=1, col=col)
        fig.update_xaxes(title_text="$ per hour" if cost_col == "hourly_usd" else "GPUs", row=1, col=col)
    fig.update_layout(title="Every simulated plan: cost against latency (large markers: the Pareto front)",
                      height=480)
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _cdfs(runs: dict[str, pl.DataFrame], slo: dict[str, float]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = (("ttft_s", "TTFT", slo["ttft_s"]), ("tpot_s", "TPOT", slo["tpot_s"]), ("e2e_s", "E2E", None))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[m[1] for m in metrics], horizontal_spacing=0.06)
    for k, (label, df) in enumerate(runs.items()):
        for col, (metric, name, target) in enumerate(metrics, start=1):
            values = np.sort(df[metric].drop_nulls().to_numpy()) * 1e3
            if not len(values):
                continue
            fig.add_trace(go.Scatter(x=values, y=np.arange(1, len(values) + 1) / len(values), mode="lines",
                                     name=label, legendgroup=label, showlegend=col == 1,
                                     line={"color": ("#1f77b4", "#ff7f0e")[k % 2]}), row=1, col=col)
    for col, (_, name, target) in enumerate(metrics, start=1):
        if target is not None:
            fig.add_vline(x=target * 1e3, line_dash="dash", annotation_text="SLO", row=1, col=col)
        fig.update_xaxes(title_text=f"{name} (ms)", type="log", row=1, col=col)
    fig.update_yaxes(title_text="fraction of requests", row=1, col=1)
    fig.update_layout(title="Latency CDFs: the top two plans", height=420)
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _cell(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if col.endswith("_s") and isinstance(v, float):
        return f"{v * 1e3:,.1f}" if math.isfinite(v) else "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if math.isfinite(v) else "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return html.escape(str(v))


def _table(table: pl.DataFrame) -> str:
    cols = [c for c in TABLE if c in table.columns]
    head = "".join(f"<th>{html.escape(c.replace('_s', ' (ms)') if c.endswith('_s') else c)}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(c, r[c])}</td>" for c in cols) + "</tr>"
                   for r in table.select(cols).iter_rows(named=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def report_html(table: pl.DataFrame, verdict: dict[str, Any], title: str, slo: dict[str, float],
                runs: dict[str, pl.DataFrame]) -> str:
    """The page; `runs` holds the per-request tables of the plans whose CDFs it draws (label -> requests)."""
    status = verdict["status"]
    if status == "ok":
        win = verdict["winner"]
        answer = (f"<p class='ok'>Winner: <b>{html.escape(win['plan'])}</b> on {win['num_gpus']} GPU(s), "
                  f"max_num_seqs {win['max_num_seqs']}, max_num_batched_tokens {win['max_num_batched_tokens']}."
                  f"</p><p>{html.escape(verdict['explanation'] or '')}</p>")
    elif status == "no_plan_meets_slo":
        closest = "".join(f"<li>{html.escape(c['plan'])} ({c['num_gpus']} GPUs, seqs {c['max_num_seqs']}, chunk "
                          f"{c['max_num_batched_tokens']}): {html.escape(c['misses'])}</li>"
                          for c in verdict["closest"])
        advice = "".join(f"<li>{html.escape(a)}</li>" for a in verdict["advice"])
        answer = (f"<p class='miss'>No plan meets the SLOs. The closest:</p><ul>{closest}</ul>"
                  f"<p>What would help:</p><ul>{advice}</ul>")
    else:
        answer = "<p class='miss'>No plan fits this model on this cluster (reasons in the table).</p>"
    ok = table.filter(pl.col("status") == "ok")
    figures = (_front(table, slo) if ok.height else "") + (_cdfs(runs, slo) if runs else "")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script src="{PLOTLY_BUNDLE}"></script>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}} .ok{{color:#2a7}} .miss{{color:#c33}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ddd;padding:2px 6px;text-align:right}}
td:nth-child(2),th:nth-child(2){{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>{answer}
<p><small>Ranking: {html.escape(verdict['order'])}. SLOs: p90 TTFT {slo['ttft_s']:g} s, p90 TPOT
{slo['tpot_s'] * 1e3:g} ms.</small></p>
{figures}
<h2>Every plan</h2>{_table(table)}
</body></html>
"""
