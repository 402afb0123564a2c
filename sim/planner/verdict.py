"""What a search answers: whether any plan meets the SLOs, how far the closest ones miss, what would help, and why
the winner beat the runner-up.

A plan meets the SLOs when it served every request (none rejected, no agent job failed), its p90 TTFT and p90 TPOT
are within their targets, and, for agent jobs with a JCT target, its p90 JCT is too. In capacity mode a plan meets
them when it sustains a positive rate (its row is measured at that rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from sim.planner.capacity import TOLERANCE
from sim.planner.ranking import LABELS, OBJECTIVES, order

OK, NO_PLAN_MEETS_SLO, NO_FEASIBLE_PLAN = "ok", "no_plan_meets_slo", "no_feasible_plan"


@dataclass(frozen=True, slots=True)
class Miss:
    metric: str  # ttft_p90_s, tpot_p90_s, jct_p90_s, e2e_p90_s, itl_max_p90_s, rejected, failed_jobs, capacity
    value: float
    target: float

    @property
    def ratio(self) -> float:
        """How many times the target the value is (inf for a count above zero where zero is the target)."""
        if self.target > 0:
            return self.value / self.target
        return math.inf if self.value > 0 else 1.0

    def text(self) -> str:
        names = {"ttft_p90_s": "p90 TTFT", "tpot_p90_s": "p90 TPOT", "jct_p90_s": "p90 JCT", "e2e_p90_s": "p90 E2EL",
                 "itl_max_p90_s": "p90 longest token gap"}
        if self.metric in names:
            name = names[self.metric]
            return f"{name} {_seconds(self.value)} > {_seconds(self.target)} ({self.ratio:.1f}x)"
        if self.metric == "rejected":
            return f"{int(self.value):,} request(s) rejected (longer than the KV cache holds)"
        if self.metric == "failed_jobs":
            return f"{int(self.value):,} agent job(s) failed"
        return "no sustainable rate at the attainment target"


def _seconds(v: float) -> str:
    if v < 0.1:
        return f"{v * 1e3:,.1f} ms"
    return f"{v * 1e3:,.0f} ms" if v < 1.0 else f"{v:,.1f} s"


def slo_misses(row: dict[str, Any], ttft_s: float, tpot_s: float, jct_s: float | None,
               capacity: bool = False, e2el_s: float | None = None, itl_s: float | None = None) -> list[Miss]:
    """Every SLO a simulated plan misses, worst first: the p90 over requests of each metric with a target."""
    if capacity:
        cap = row.get("capacity_rps", row.get("capacity_agents"))
        return [Miss("capacity", 0.0, 1.0)] if not cap else []
    misses = []
    for metric, target in (("ttft_p90_s", ttft_s), ("tpot_p90_s", tpot_s), ("jct_p90_s", jct_s),
                           ("e2e_p90_s", e2el_s), ("itl_max_p90_s", itl_s)):
        if target is None or (metric == "jct_p90_s" and row.get("jct_p90_s") is None):
            continue
        value = row.get(metric)
        value = math.inf if value is None or (isinstance(value, float) and math.isnan(value)) else value
        if value > target:
            misses.append(Miss(metric, value, target))
    if row.get("num_rejected"):
        misses.append(Miss("rejected", row["num_rejected"], 0.0))
    if row.get("num_jobs_failed"):
        misses.append(Miss("failed_jobs", row["num_jobs_failed"], 0.0))
    return sorted(misses, key=lambda m: -m.ratio)


def status(table: pl.DataFrame) -> str:
    ok = table.filter(pl.col("status") == "ok")
    if ok.height == 0:
        return NO_FEASIBLE_PLAN
    return OK if ok["meets_slo"][0] else NO_PLAN_MEETS_SLO


def closest(table: pl.DataFrame, n: int = 3) -> list[dict[str, Any]]:
    """The `n` simulated plans nearest to meeting the SLOs (the smallest worst ratio over their misses), each with
    its misses. The table's own ranking order breaks ties."""
    ok = table.filter(pl.col("status") == "ok")
    if ok.height == 0 or "slo_shortfall" not in ok.columns:
        return []
    ok = ok.with_row_index("_order").sort(["slo_shortfall", "_order"], nulls_last=True)
    return [{"plan": r["plan"], "rank": r["rank"], "num_gpus": r["num_gpus"], "max_num_seqs": r["max_num_seqs"],
             "max_num_batched_tokens": r["max_num_batched_tokens"], "misses": r["slo_misses"],
             "slo_attainment": r.get("slo_attainment")} for r in ok.head(n).iter_rows(named=True)]


def advice(table: pl.DataFrame, num_gpus: int, rate: float | None) -> list[str]:
    """What would help when no plan meets the SLOs, from what the plans show."""
    ok = table.filter(pl.col("status") == "ok")
    if ok.height == 0:
        return ["more or larger GPUs, or a smaller model or precision (no plan fits; reasons above)"]
    tips = []
    top = ok.row(0, named=True)
    misses = top.get("slo_misses") or ""
    biggest = ok.filter(pl.col("num_gpus") == ok["num_gpus"].max())
    if biggest.height and biggest["num_gpus"][0] >= num_gpus:
        tips.append(f"more GPUs than {num_gpus}: every plan that uses all of them misses")
    att = top.get("slo_attainment")
    if rate and att is not None and att < 1.0:
        tips.append(f"a lower rate: the closest plan serves {att:.0%} of requests within the SLOs at "
                    f"{rate:g} req/s (`--capacity` finds each plan's sustainable rate)")
    if "rejected" in misses:
        tips.append("more KV room for the longest requests (larger TP, more memory, --max-tokens)")
    if "TTFT" in misses and "TPOT" not in misses:
        tips.append("a looser TTFT target, or plans with more prefill capacity (--disagg)")
    return tips


def explain(winner: dict[str, Any], runner_up: dict[str, Any] | None, objective: str,
            columns: list[str] | tuple[str, ...]) -> str:
    """One line: why the winner ranks above the runner-up: the objective's columns they tie on, then the first
    column of the order where they differ (a tie-break is named as one)."""
    if runner_up is None:
        return f"{winner['plan']} is the only simulated plan"
    head = f"{_name(winner)} over {_name(runner_up)}"
    keys = [k for k in order(objective, columns) if k[0] in winner]
    objective_cols = {c for c, _ in OBJECTIVES[objective]} | {"capacity_rps_per_gpu", "capacity_agents_per_gpu"}
    same = []
    for col, desc in keys:
        a, b = winner.get(col), runner_up.get(col)
        if _equal(a, b):
            if col in objective_cols:
                same.append(LABELS.get(col, col))
            continue
        if col == "meets_slo":
            return f"{head}: it meets the SLOs and the runner-up does not"
        tied = f"same {', '.join(same)}; " if same else ""
        how = "" if col in objective_cols else "tie broken by "
        line = f"{head}: {tied}{how}{LABELS.get(col, col)} {_value(col, a)} vs {_value(col, b)}"
        if col.startswith("capacity_") and isinstance(a, float) and isinstance(b, float) and a > 0 \
                and abs(a - b) <= TOLERANCE * max(a, b):
            line += f" (within the capacity search's {TOLERANCE:.0%} tolerance: a tie in practice)"
        return line
    return f"{_name(winner)} and {_name(runner_up)} tie on every column"


def _name(row: dict[str, Any]) -> str:
    return f"{row['plan']} (seqs {row['max_num_seqs']}, chunk {row['max_num_batched_tokens']})"


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * max(abs(a), abs(b)))
    return a == b


def _value(col: str, v: Any) -> str:
    if v is None:
        return "-"
    if col.endswith("_s") and isinstance(v, float):
        return _seconds(v)
    if col == "hourly_usd":
        return f"${v:,.2f}"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return str(v)
