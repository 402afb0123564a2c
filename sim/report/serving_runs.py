"""End-to-end check against measured vLLM V1 serving runs: each row of a table of `vllm bench serve` runs
(benchmarks/data/vllm_v1_runs.csv; its README says where every figure comes from) is simulated with the vllm-v1
preset and the run's own settings, and its mean TTFT, mean TPOT and duration are compared with the measured ones.
Nothing is fitted here: the rows are never used to build or tune fleetsim.

A run keeps at most `concurrency` requests in flight (`--max-concurrency`; N prompts sent at once with no request
rate is a closed loop of N); prompts and outputs have the run's lengths (the mean where the run's varied). The
simulation's prefix cache starts cold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

METRICS = (("ttft", "mean_ttft_ms", "ttft_mean_s", 1e3), ("tpot", "mean_tpot_ms", "tpot_mean_s", 1e3),
           ("duration", "duration_s", "duration_s", 1.0))


def read_runs(path: Path) -> pl.DataFrame:
    return pl.read_csv(path)


def simulate(row: dict) -> dict[str, float]:
    """The summary of fleetsim's simulation of one measured run."""
    import sim

    n = int(row["num_prompts"])
    result = sim.run(
        model=row["model"], gpu=row["gpu"], num_gpus=int(row["tp"]), tp=int(row["tp"]),
        **{"workload.trace": None, "workload.arrival": "poisson", "workload.num_requests": n,
           "workload.duration_s": None, "workload.concurrency": int(row["concurrency"]),
           "workload.input_len": f"fixed:{int(row['input_len'])}",
           "workload.output_len": f"fixed:{int(row['output_len'])}",
           "engine.preset": "vllm-v1", "engine.gpu_memory_utilization": float(row["gpu_memory_utilization"]),
           "engine.max_num_batched_tokens": int(row["max_num_batched_tokens"]),
           "engine.max_num_seqs": int(row["max_num_seqs"])})
    return result.summary


@dataclass(frozen=True)
class ServingRuns:
    rows: pl.DataFrame  # the measured rows with predicted_<metric> and <metric>_error columns

    def summary(self, metric: str, subset: str | None = None) -> tuple[int, float, float]:
        """(runs, median, p90) of the absolute relative error of `metric` (ttft, tpot or duration), over every run or
        one set of runs (the table's `set` column)."""
        rows = self.rows if subset is None else self.rows.filter(pl.col("set") == subset)
        err = rows[f"{metric}_error"].abs().to_numpy()
        return len(err), float(np.median(err)), float(np.percentile(err, 90))


def validate_serving_runs(path: Path) -> ServingRuns:
    runs = read_runs(path)
    predicted: dict[str, list[float]] = {name: [] for name, *_ in METRICS}
    for row in runs.iter_rows(named=True):
        s = simulate(row)
        for name, _, key, scale in METRICS:
            predicted[name].append(s[key] * scale)
    rows = runs.with_columns(pl.Series(f"predicted_{name}", values) for name, values in predicted.items())
    rows = rows.with_columns((pl.col(f"predicted_{name}") / pl.col(column) - 1).alias(f"{name}_error")
                             for name, column, *_ in METRICS)
    return ServingRuns(rows)
