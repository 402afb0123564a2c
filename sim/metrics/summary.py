"""Run summary: percentiles of each latency, throughput, goodput under the SLOs, utilisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from sim.metrics.itl import Weighted

PERCENTILES = (50, 90, 99)


def _stats(prefix: str, values: np.ndarray, out: dict[str, Any]) -> None:
    if values.size and np.isnan(values).any():
        values = values[~np.isnan(values)]
    if values.size == 0:
        out[f"{prefix}_mean_s"] = None
        out[f"{prefix}_std_s"] = None
        for p in PERCENTILES:
            out[f"{prefix}_p{p}_s"] = None
        out[f"{prefix}_max_s"] = None
        return
    out[f"{prefix}_mean_s"] = float(values.mean())
    out[f"{prefix}_std_s"] = float(values.std())  # population (ddof 0), as vLLM's benchmark reports it
    for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES)):
        out[f"{prefix}_p{p}_s"] = float(v)
    out[f"{prefix}_max_s"] = float(values.max())


def _weighted_stats(prefix: str, values: Weighted, out: dict[str, Any]) -> None:
    """_stats of the expanded multiset (the same percentiles to the last bit; the mean within rounding)."""
    if values.size == 0:
        _stats(prefix, np.zeros(0), out)
        return
    out[f"{prefix}_mean_s"] = values.mean()
    out[f"{prefix}_std_s"] = values.std()
    for p, v in zip(PERCENTILES, values.percentiles(PERCENTILES)):
        out[f"{prefix}_p{p}_s"] = v
    out[f"{prefix}_max_s"] = values.max()


def summarize(df: pl.DataFrame, itl: Weighted, *, slo_ttft_s: float, slo_tpot_s: float,
              slo_e2el_s: float | None = None, slo_itl_s: float | None = None,
              busy_s: list[float], kv_util_mean: float, kv_util_peak: float) -> dict[str, Any]:
    fin = df.filter(pl.col("status") == "finished")
    out: dict[str, Any] = {
        "num_requests": df.height,
        "num_finished": fin.height,
        "num_rejected": int((df["status"] == "rejected").sum()),
    }
    if fin.height:
        start = float(df["arrival_s"].min())
        span = float(fin["finish_s"].max()) - start
    else:
        span = 0.0
    out["duration_s"] = span
    arrivals = df["arrival_s"]
    window = float(arrivals.max() - arrivals.min()) if df.height > 1 else 0.0
    out["offered_rps"] = (df.height - 1) / window if window > 0 else None
    rate = (lambda x: x / span if span > 0 else None)  # noqa: E731
    out["throughput_rps"] = rate(fin.height)
    out["input_tokens_per_s"] = rate(float(fin["input_tokens"].sum()))
    out["output_tokens_per_s"] = rate(float(fin["output_tokens"].sum()))
    out["total_tokens_per_s"] = rate(float(fin["input_tokens"].sum() + fin["output_tokens"].sum()))
    for name in ("ttft", "tpot", "e2e", "queue_delay"):
        _stats(name, fin[f"{name}_s"].to_numpy().astype(float), out)
    _weighted_stats("itl", itl, out)
    itl_max = fin["itl_max_s"].drop_nulls().drop_nans() if fin.height else fin["itl_max_s"]
    out["itl_max_p90_s"] = float(np.percentile(itl_max.to_numpy(), 90)) if len(itl_max) else None
    # A request is good when it meets every target set, as vLLM's --goodput counts it (vllm/benchmarks/serve.py,
    # calculate_metrics): TTFT, TPOT (requests of one token have none), E2EL and, ours, the longest token gap.
    ok = (pl.col("ttft_s") <= slo_ttft_s) & (pl.col("tpot_s").fill_null(0.0) <= slo_tpot_s)
    if slo_e2el_s is not None:
        ok = ok & (pl.col("e2e_s") <= slo_e2el_s)
    if slo_itl_s is not None:
        ok = ok & (pl.col("itl_max_s").fill_null(0.0) <= slo_itl_s)
    good = fin.filter(ok)
    out["slo_ttft_s"] = slo_ttft_s
    out["slo_tpot_s"] = slo_tpot_s
    out["slo_e2el_s"] = slo_e2el_s
    out["slo_itl_s"] = slo_itl_s
    out["goodput_rps"] = rate(good.height)
    out["goodput_output_tokens_per_s"] = rate(float(good["output_tokens"].sum()))
    out["slo_attainment"] = good.height / df.height if df.height else None
    out["preemptions"] = int(df["preemptions"].sum())
    # As vLLM reports it: tokens found in the prefix cache over tokens looked up, at every admission.
    lookups = float(df["prefix_lookup_tokens"].sum())
    out["prefix_hit_rate"] = float(df["prefix_hit_tokens"].sum()) / lookups if lookups else 0.0
    out["gpu_busy_fraction"] = float(np.mean(busy_s)) / span if span > 0 else None
    out["kv_util_mean"] = kv_util_mean
    out["kv_util_peak"] = kv_util_peak
    return out


def job_summary(jobs: pl.DataFrame) -> dict[str, Any]:
    """Agent workloads: job completion time and how much context had to be computed again."""
    out: dict[str, Any] = {"num_jobs": jobs.height}
    done = jobs.filter(~pl.col("failed")) if jobs.height else jobs
    out["num_jobs_failed"] = jobs.height - done.height
    _stats("jct", done["jct_s"].to_numpy().astype(float) if done.height else np.zeros(0), out)
    out["reprefill_tokens"] = int(jobs["reprefill_tokens"].sum()) if jobs.height else 0
    return out
