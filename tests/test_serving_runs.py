"""End to end against measured vLLM V1 serving runs (benchmarks/data/vllm_v1_runs.csv): the vllm-v1 preset, with
each run's own settings and nothing fitted on these rows, predicts mean TPOT, duration and mean TTFT where
docs/validation.md says it does, misses included."""

from pathlib import Path

import polars as pl
import pytest

from sim.hardware import load_gpu
from sim.model import load_model
from sim.parallel import Plan, memory_budget
from sim.report.serving_runs import read_runs, validate_serving_runs

RUNS = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "vllm_v1_runs.csv"


@pytest.fixture(scope="module")
def result():
    return validate_serving_runs(RUNS)


def test_every_measured_run_is_predicted_once(result):
    assert result.rows.height == read_runs(RUNS).height == 43
    assert result.rows["run"].n_unique() == 43
    for metric in ("ttft", "tpot", "duration"):
        assert result.rows[f"predicted_{metric}"].is_finite().all()
        assert (result.rows[f"predicted_{metric}"] > 0).all()


def test_kv_cache_of_each_deployment_is_what_its_startup_log_says():
    """The logged "Available KV cache memory" of each (model, utilization): fleetsim's budget within 5%."""
    logged = read_runs(RUNS).filter(pl.col("logged_kv_gib").is_not_null())
    assert logged.height == 12
    for row in logged.unique(["model", "gpu_memory_utilization"]).iter_rows(named=True):
        b = memory_budget(load_model(row["model"]), load_gpu(row["gpu"]), Plan(tp=row["tp"]),
                          gpu_memory_utilization=row["gpu_memory_utilization"], block_size=16,
                          max_batched_tokens=row["max_num_batched_tokens"], max_num_seqs=row["max_num_seqs"])
        assert b.kv_bytes / 2**30 == pytest.approx(row["logged_kv_gib"], rel=0.05)


def test_held_apart_error_of_the_vllm_v1_preset(result, capsys):
    with capsys.disabled():
        for subset in result.rows["set"].unique(maintain_order=True):
            for metric in ("ttft", "tpot", "duration"):
                n, median, p90 = result.summary(metric, subset)
                print(f"\nvLLM V1 runs, {subset}, {metric}: {n} runs, median {median:.1%}, p90 {p90:.1%}")
    # A100 bursts (vLLM 0.10.1): within the 10% target.
    for metric in ("tpot", "duration", "ttft"):
        assert result.summary(metric, "a100-bursts")[1] <= 0.10
    assert result.summary("tpot", "a100-bursts")[2] <= 0.15
    # H100 closed loops: throughput within 10%; TPOT over-predicted by 10-15% (Qwen3-8B) and 1-19% (gpt-oss-120b,
    # its TP2 run with async scheduling, which fleetsim does not model).
    assert result.summary("duration", "qwen3-8b-h100-closed")[1] <= 0.10
    assert result.summary("tpot", "qwen3-8b-h100-closed")[2] <= 0.16
    assert result.summary("tpot", "gpt-oss-h100-closed")[2] <= 0.20
    # Qwen3-235B-A22B bursts on 8 H100 (TP8 BF16) and 4 (TP4 FP8): throughput and TPOT within 10% at the median; the
    # 984 prompts of 128 tokens sent at once finish later than predicted, as every such burst does (documented).
    assert result.summary("duration", "qwen3-235b-h100-bursts")[1] <= 0.10
    assert result.summary("tpot", "qwen3-235b-h100-bursts")[1] <= 0.10
    long_prompts = result.rows.filter((pl.col("set") == "qwen3-235b-h100-bursts") & (pl.col("input_len") >= 1996))
    assert long_prompts["duration_error"].abs().max() <= 0.15
    # DeepSeek-R1 at TP8 on H200: a documented miss the other way, fleetsim faster than measured (TPOT 35% below at
    # a closed loop of 4, duration 10-23% below over the long-prompt bursts).
    assert result.summary("duration", "deepseek-r1-h200-bursts")[1] <= 0.30
    assert result.summary("tpot", "deepseek-r1-h200-closed")[2] <= 0.40
    # Qwen3-14B bursts on one H100: a documented miss, fleetsim about 1.7x as fast as measured, like every burst
    # GPUStack ran on one or two GPUs.
    assert result.summary("duration", "qwen3-14b-h100-bursts")[2] <= 0.80
    # gpt-oss-120b bursts on H100 (vLLM 0.10.2): a documented miss, fleetsim about twice as fast as measured
    # (docs/validation.md); the bound keeps it from growing unnoticed. The target is 10%.
    assert result.summary("duration", "gpt-oss-h100-bursts")[2] <= 0.65


@pytest.mark.parametrize("subset", ["a100-bursts", "qwen3-8b-h100-closed"])
def test_runs_rank_by_tpot_as_measured(result, subset):
    """Within each model the runs order by predicted TPOT as they do by measured TPOT: with the prompts in flight
    on Qwen3-8B (7.28-7.71 ms from 1 to 8), and for Qwen2.5-32B not monotone once the KV cache is full (measured
    80.0, 76.7, 77.7 ms at 50, 75, 100 prompts: preemptions cap the batch), which the prediction reproduces. (The
    gpt-oss-120b bursts do not rank as measured: see the miss above.)"""
    rows_of_set = result.rows.filter(pl.col("set") == subset)
    for model in rows_of_set["model"].unique():
        rows = rows_of_set.filter(pl.col("model") == model)
        assert rows.sort("predicted_tpot")["run"].to_list() == rows.sort("mean_tpot_ms")["run"].to_list(), model
