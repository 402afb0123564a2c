"""Objectives, ranking and the Pareto front of a search's result table."""

from __future__ import annotations

import polars as pl

# objective -> (column, descending?) in order of priority; ties fall to the later columns.
OBJECTIVES = {
    "goodput": [("goodput_per_gpu", True), ("tpot_p90_s", False)],
    "cost": [("cost_per_mtok_usd", False), ("goodput_per_gpu", True)],
    "throughput": [("output_tokens_per_s_per_gpu", True), ("tpot_p90_s", False)],
    "jct": [("jct_mean_s", False), ("jct_p99_s", False)],  # agent jobs: the shortest job completion
}


def rank(table: pl.DataFrame, objective: str) -> pl.DataFrame:
    """Simulated plans first, best first, with a 1-based rank; then pruned and infeasible plans (rank null)."""
    keys = list(OBJECTIVES[objective])
    for capacity in ("capacity_rps_per_gpu", "capacity_agents_per_gpu"):
        if objective == "goodput" and capacity in table.columns:
            keys.insert(0, (capacity, True))
    ok = table.filter(pl.col("status") == "ok")
    rest = table.filter(pl.col("status") != "ok").sort(["status", "plan"])
    if ok.height:
        ok = ok.sort([c for c, _ in keys] + ["plan"], descending=[d for _, d in keys] + [False], nulls_last=True)
        ok = ok.with_columns(pl.int_range(1, ok.height + 1).alias("rank"))
    else:
        ok = ok.with_columns(pl.lit(None, pl.Int64).alias("rank"))
    rest = rest.with_columns(pl.lit(None, pl.Int64).alias("rank"))
    table = pl.concat([ok, rest], how="diagonal_relaxed")
    first = ["rank", "plan", "status"]
    return table.select(first + [c for c in table.columns if c not in first])


def pareto_front(table: pl.DataFrame) -> pl.DataFrame:
    """Mark simulated plans that no other plan beats on both throughput per GPU and p90 TPOT."""
    if "output_tokens_per_s_per_gpu" not in table.columns:
        return table.with_columns(pl.lit(False).alias("pareto"))
    thr = table["output_tokens_per_s_per_gpu"].to_list()
    lat = table["tpot_p90_s"].to_list() if "tpot_p90_s" in table.columns else [None] * table.height
    ok = [s == "ok" and t is not None and l is not None for s, t, l in zip(table["status"], thr, lat)]
    flags = []
    for i in range(table.height):
        if not ok[i]:
            flags.append(False)
            continue
        dominated = any(ok[j] and thr[j] >= thr[i] and lat[j] <= lat[i] and (thr[j] > thr[i] or lat[j] < lat[i])
                        for j in range(table.height))
        flags.append(not dominated)
    return table.with_columns(pl.Series("pareto", flags))
