"""End-to-end check against measured prompt and per-token times: Splitwise's perf_model.csv (Patel et al., ISCA'24;
Mutinifni/splitwise-sim, MIT), Llama-2-70B and BLOOM-176B on A100-80GB and H100-80GB by prompt size, batch and TP.

Those times come from the 2023 engine Splitwise measured, not from vLLM V1: no CUDA graphs, older kernels and a
large CPU cost per step (its per-token time barely moves from TP4 to TP8). So the check is of fleetsim's cost
structure, not of a preset: the step is priced with the roofline kernels (the calibration family's efficiencies,
not the vLLM 0.24 tables), every step eager, and three engine constants (CPU seconds per step, per layer launched,
per sequence) are fitted by least squares on the calibration rows only: every TP4 configuration. The error is
reported on the other rows (TP2 and TP8, and all of BLOOM, measured at TP8 only), which the fit never sees.

Rows whose prompt time is below that of the same configuration with half the batch are measurement faults (twice
the work in less time; Llama-2-70B, TP2, batch 64 on both GPUs) and are left out. The power-capped H100 rows are
left out (fleetsim does not model power caps).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import least_squares

from sim.cost.iteration import IterationCost
from sim.hardware import Cluster, load_gpu, load_node
from sim.model import load_model
from sim.parallel import Plan

MODELS = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
GPUS = {"a100-80gb": ("a100", "hgx-8gpu"), "h100-80gb": ("h100", "dgx-h100")}
CALIBRATION_TP = 4
_KEY = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]


@dataclass(frozen=True)
class EngineFit:
    step_overhead_s: float
    eager_layer_s: float
    seq_overhead_s: float


def read_perf_model(path: Path) -> pl.DataFrame:
    """Median of the repeated measurements per configuration, faulty rows and unmodelled hardware left out; a
    `split` column says calibration or validation."""
    df = pl.read_csv(path).filter(pl.col("model").is_in(list(MODELS)) & pl.col("hardware").is_in(list(GPUS)))
    df = df.group_by(_KEY).agg(pl.col("prompt_time").median(), pl.col("token_time").median()).sort(_KEY)
    half = df.select(*[c for c in _KEY if c != "batch_size"], (pl.col("batch_size") * 2).alias("batch_size"),
                     pl.col("prompt_time").alias("half_batch_prompt_time"))
    df = df.join(half, on=_KEY, how="left")
    df = df.filter(pl.col("half_batch_prompt_time").is_null()
                   | (pl.col("prompt_time") >= pl.col("half_batch_prompt_time"))).drop("half_batch_prompt_time")
    return df.with_columns(pl.when(pl.col("tensor_parallel") == CALIBRATION_TP).then(pl.lit("calibration"))
                           .otherwise(pl.lit("validation")).alias("split"))


def predict(df: pl.DataFrame, fit: EngineFit) -> np.ndarray:
    """[rows, 2] predicted prompt time (one prefill step of `batch` prompts) and mean per-token time (a decode step
    of `batch` sequences at the generation's midpoint context), in milliseconds."""
    costs: dict[tuple[str, str, int], IterationCost] = {}
    out = np.empty((df.height, 2))
    for i, r in enumerate(df.iter_rows(named=True)):
        key = (r["model"], r["hardware"], r["tensor_parallel"])
        cost = costs.get(key)
        if cost is None:
            gpu_name, node = GPUS[r["hardware"]]
            gpu = dataclasses.replace(load_gpu(gpu_name), kernel_tables=None)
            tp = r["tensor_parallel"]
            cost = costs[key] = IterationCost(
                load_model(MODELS[r["model"]]), Cluster(gpu, load_node(node), None, tp), Plan(tp=tp),
                step_overhead_s=fit.step_overhead_s, seq_overhead_s=fit.seq_overhead_s, graph_max_tokens=0,
                eager_layer_s=fit.eager_layer_s)
        b, p, t = r["batch_size"], r["prompt_size"], r["token_size"]
        out[i] = (cost.step_time([(p, 0)] * b, 0, 0) * 1e3, cost.decode_time(b, b * (p + t // 2)) * 1e3)
    return out


def fit_engine(calibration: pl.DataFrame) -> EngineFit:
    """The three engine constants minimising the squared log error of prompt and token times on `calibration`."""
    measured = calibration.select("prompt_time", "token_time").to_numpy()

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(predict(calibration, EngineFit(*x)) / measured).ravel()

    start = np.array([5e-3, 2e-4, 2e-4])
    result = least_squares(residuals, start, bounds=(0.0, np.inf), x_scale=start, diff_step=1e-2)
    return EngineFit(*(float(v) for v in result.x))


@dataclass(frozen=True)
class EndToEnd:
    fit: EngineFit
    rows: pl.DataFrame  # every row with predictions and relative errors

    def summary(self, split: str, metric: str) -> tuple[int, float, float]:
        err = self.rows.filter(pl.col("split") == split)[f"{metric}_error"].abs().to_numpy()
        return len(err), float(np.median(err)), float(np.percentile(err, 90))


def validate_splitwise(path: Path) -> EndToEnd:
    df = read_perf_model(path)
    fit = fit_engine(df.filter(pl.col("split") == "calibration"))
    pred = predict(df, fit)
    rows = df.with_columns(pl.Series("predicted_prompt_time", pred[:, 0]), pl.Series("predicted_token_time", pred[:, 1]))
    rows = rows.with_columns((pl.col("predicted_prompt_time") / pl.col("prompt_time") - 1).alias("prompt_error"),
                             (pl.col("predicted_token_time") / pl.col("token_time") - 1).alias("token_error"))
    return EndToEnd(fit, rows)
