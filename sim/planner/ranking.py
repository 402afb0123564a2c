"""Objectives, the total order that ranks a search's plans, and the Pareto front.

Every ranking puts the plans that meet the SLOs first: a planner acts on the winner, so a plan that misses a target
never outranks one that meets it, whatever the objective. Then the objective's columns, then the same tie-breaks for
every objective, ending with the scenario's hash: the order is total, so two runs of one search rank alike.
"""

from __future__ import annotations

import polars as pl

# objective -> its columns (name, higher first?) in order of priority.
OBJECTIVES: dict[str, list[tuple[str, bool]]] = {
    # the offered load served within the SLOs, per GPU used: fewer GPUs for the same traffic win
    "goodput": [("goodput_per_gpu", True)],
    # the cheapest good tokens (GPU hours and electricity), then the cheapest cluster per hour
    "cost": [("cost_per_mtok_usd", False), ("hourly_usd", False)],
    # the fewest joules per output token (facility energy: GPUs busy and idle, nodes, PUE)
    "energy": [("joules_per_output_token", False), ("cost_per_mtok_usd", False)],
    # the fewest GPUs that meet the SLOs
    "gpus": [("num_gpus", False)],
    "throughput": [("output_tokens_per_s_per_gpu", True)],
    "jct": [("jct_mean_s", False), ("jct_p99_s", False)],  # agent jobs: the shortest job completion
}

# After the objective, for every objective: lower latency, fewer GPUs, then the plan's name, knobs and the hash of
# its whole scenario (unique), so that no two plans tie.
TIE_BREAKS: list[tuple[str, bool]] = [
    ("tpot_p90_s", False), ("ttft_p90_s", False), ("num_gpus", False), ("hourly_usd", False), ("plan", False),
    ("max_num_seqs", False), ("max_num_batched_tokens", False), ("kv_policy", False), ("moe_policy", False),
    ("key", False),
]

LABELS = {
    "meets_slo": "meets the SLOs", "goodput_per_gpu": "goodput per GPU (req/s)", "hourly_usd": "$/hour",
    "cost_per_mtok_usd": "$ per million good output tokens", "num_gpus": "GPUs",
    "joules_per_output_token": "J per output token",
    "output_tokens_per_s_per_gpu": "output tokens/s per GPU", "jct_mean_s": "mean JCT (s)",
    "jct_p99_s": "p99 JCT (s)", "tpot_p90_s": "p90 TPOT", "ttft_p90_s": "p90 TTFT", "plan": "plan name",
    "max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens", "kv_policy": "KV policy",
    "moe_policy": "MoE policy", "key": "scenario hash", "capacity_rps_per_gpu": "capacity per GPU (req/s)",
    "capacity_agents_per_gpu": "agents per GPU",
}


def order(objective: str, columns: list[str] | tuple[str, ...] = ()) -> list[tuple[str, bool]]:
    """The full sort order of a ranking: SLOs met, (capacity in capacity mode), the objective, the tie-breaks."""
    keys: list[tuple[str, bool]] = [("meets_slo", True)]
    if objective == "goodput":
        keys += [(c, True) for c in ("capacity_rps_per_gpu", "capacity_agents_per_gpu") if c in columns]
    keys += OBJECTIVES[objective]
    keys += [k for k in TIE_BREAKS if k not in keys]
    return keys


def describe_order(objective: str, columns: list[str] | tuple[str, ...] = ()) -> str:
    """One line a user reads: what decides the ranking, in order."""
    head, ties = [], []
    keys = order(objective, columns)
    first_tie = len(keys) - len([k for k in TIE_BREAKS if k not in OBJECTIVES[objective]])
    for i, (col, desc) in enumerate(keys):
        if col == "meets_slo":
            head.append("plans meeting the SLOs first")
        elif i >= first_tie:
            ties.append("scenario hash" if col == "key" else LABELS.get(col, col))
        else:
            head.append(f"{LABELS.get(col, col)}, {'higher' if desc else 'lower'} first")
    return f"{'; then '.join(head)}; ties broken by (lower first) {', '.join(ties)}"


def rank(table: pl.DataFrame, objective: str) -> pl.DataFrame:
    """Simulated plans first, best first, with a 1-based rank; then pruned and infeasible plans (rank null)."""
    keys = [(c, d) for c, d in order(objective, table.columns) if c in table.columns]
    ok = table.filter(pl.col("status") == "ok")
    rest = table.filter(pl.col("status") != "ok").sort(["status", "plan"] + [c for c in ("max_num_seqs",
                                                       "max_num_batched_tokens") if c in table.columns])
    if ok.height:
        ok = ok.sort([c for c, _ in keys], descending=[d for _, d in keys], nulls_last=True, maintain_order=True)
        ok = ok.with_columns(pl.int_range(1, ok.height + 1).alias("rank"))
    else:
        ok = ok.with_columns(pl.lit(None, pl.Int64).alias("rank"))
    rest = rest.with_columns(pl.lit(None, pl.Int64).alias("rank"))
    table = pl.concat([ok, rest], how="diagonal_relaxed")
    first = ["rank", "plan", "status"]
    return table.select(first + [c for c in table.columns if c not in first])


def pareto_front(table: pl.DataFrame) -> pl.DataFrame:
    """Mark simulated plans that no other plan beats on both cost ($/hour) and p90 TPOT."""
    if "hourly_usd" not in table.columns or "tpot_p90_s" not in table.columns:
        return table.with_columns(pl.lit(False).alias("pareto"))
    cost = table["hourly_usd"].to_list()
    lat = table["tpot_p90_s"].to_list()
    meets = table["meets_slo"].to_list() if "meets_slo" in table.columns else [True] * table.height
    ok = [s == "ok" and c is not None and l is not None for s, c, l in zip(table["status"], cost, lat)]
    flags = []
    for i in range(table.height):
        if not ok[i]:
            flags.append(False)
            continue
        dominated = any(ok[j] and meets[j] >= meets[i] and cost[j] <= cost[i] and lat[j] <= lat[i]
                        and (cost[j] < cost[i] or lat[j] < lat[i] or meets[j] > meets[i])
                        for j in range(table.height))
        flags.append(not dominated)
    return table.with_columns(pl.Series("pareto", flags))
