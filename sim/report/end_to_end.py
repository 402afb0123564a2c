"""End-to-end check against measured prompt and per-token times: Splitwise's perf_model.csv (Patel et al., ISCA'24;
Mutinifni/splitwise-sim, MIT), Llama-2-70B and BLOOM-176B on A100-80GB and H100-80GB by prompt size, batch and TP.

Those times come from the 2023 engine Splitwise measured, not from vLLM V1: no CUDA graphs, older kernels and a
large CPU cost per step (its per-token time barely moves from TP4 to TP8). So the check is of fleetsim's cost
structure, not of a preset: the step is priced with the roofline kernels (the calibration family's efficiencies,
not the vLLM 0.24 tables), every step eager, and four engine constants are fitted by least squares: CPU seconds per
step, per TP worker per step, per layer launched and per sequence.

Why a cost per TP worker: at 128-token prompts the measured step grows with TP (Llama-2-70B on H100: 48, 49 and
58 ms at TP2, TP4 and TP8) where the GPU work shrinks. An engine that drives each TP worker with its own remote call
per step pays that (vLLM 0.1-0.2's `LLMEngine._run_workers`: one Ray `execute_method.remote` per worker, each
carrying the step's inputs; later versions broadcast from a driver worker instead).

Split: leave one TP degree out. Each TP degree's rows are predicted by constants fitted on the other two degrees'
rows only, so every reported row is held apart from the fit that predicts it, and a term that grows with TP is
identifiable (a fit on one degree alone cannot tell a per-worker cost from a per-step one). BLOOM is measured at
TP8 only, so its rows are predicted from Llama-2-70B's TP2 and TP4 rows.

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
TP_DEGREES = (2, 4, 8)
_KEY = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]


@dataclass(frozen=True)
class EngineFit:
    step_overhead_s: float
    eager_layer_s: float
    seq_overhead_s: float
    worker_overhead_s: float  # per TP worker, per step


def read_perf_model(path: Path) -> pl.DataFrame:
    """Median of the repeated measurements per configuration, faulty rows and unmodelled hardware left out."""
    df = pl.read_csv(path).filter(pl.col("model").is_in(list(MODELS)) & pl.col("hardware").is_in(list(GPUS)))
    df = df.group_by(_KEY).agg(pl.col("prompt_time").median(), pl.col("token_time").median()).sort(_KEY)
    half = df.select(*[c for c in _KEY if c != "batch_size"], (pl.col("batch_size") * 2).alias("batch_size"),
                     pl.col("prompt_time").alias("half_batch_prompt_time"))
    df = df.join(half, on=_KEY, how="left")
    return df.filter(pl.col("half_batch_prompt_time").is_null()
                     | (pl.col("prompt_time") >= pl.col("half_batch_prompt_time"))).drop("half_batch_prompt_time")


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
                step_overhead_s=fit.step_overhead_s + fit.worker_overhead_s * tp, seq_overhead_s=fit.seq_overhead_s, graph_max_tokens=0,
                eager_layer_s=fit.eager_layer_s)
        b, p, t = r["batch_size"], r["prompt_size"], r["token_size"]
        out[i] = (cost.step_time([(p, 0)] * b, 0, 0) * 1e3, cost.decode_time(b, b * (p + t // 2)) * 1e3)
    return out


def fit_engine(calibration: pl.DataFrame) -> EngineFit:
    """The four engine constants minimising the squared log error of prompt and token times on `calibration`."""
    measured = calibration.select("prompt_time", "token_time").to_numpy()

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(predict(calibration, EngineFit(*x)) / measured).ravel()

    start = np.array([5e-3, 2e-4, 2e-4, 1e-3])
    result = least_squares(residuals, start, bounds=(0.0, np.inf), x_scale=start, diff_step=1e-2)
    return EngineFit(*(float(v) for v in result.x))


@dataclass(frozen=True)
class EndToEnd:
    fits: dict[int, EngineFit]  # held-out TP degree -> constants fitted without its rows
    rows: pl.DataFrame  # every row, predicted by the fit that never saw its TP degree, with relative errors

    def summary(self, metric: str, tp: int | None = None) -> tuple[int, float, float]:
        """(rows, median, p90) of the absolute relative error of `metric` ("prompt" or "token"), over every row or
        the rows of one TP degree."""
        rows = self.rows if tp is None else self.rows.filter(pl.col("tensor_parallel") == tp)
        err = rows[f"{metric}_error"].abs().to_numpy()
        return len(err), float(np.median(err)), float(np.percentile(err, 90))


def validate_splitwise(path: Path) -> EndToEnd:
    df = read_perf_model(path)
    fits, parts = {}, []
    for tp in TP_DEGREES:
        held = df.filter(pl.col("tensor_parallel") == tp)
        fits[tp] = fit = fit_engine(df.filter(pl.col("tensor_parallel") != tp))
        pred = predict(held, fit)
        parts.append(held.with_columns(pl.Series("predicted_prompt_time", pred[:, 0]),
                                       pl.Series("predicted_token_time", pred[:, 1])))
    rows = pl.concat(parts).with_columns(
        (pl.col("predicted_prompt_time") / pl.col("prompt_time") - 1).alias("prompt_error"),
        (pl.col("predicted_token_time") / pl.col("token_time") - 1).alias("token_error"))
    return EndToEnd(fits, rows)
