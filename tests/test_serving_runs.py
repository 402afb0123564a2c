"""End to end against measured vLLM V1 serving runs (benchmarks/data/vllm_v1_bursts.csv): the vllm-v1 preset, with
each run's own settings and nothing fitted on these rows, predicts mean TPOT, duration and mean TTFT where
docs/validation.md says it does."""

from pathlib import Path

import polars as pl
import pytest

from sim.hardware import load_gpu
from sim.model import load_model
from sim.parallel import Plan, memory_budget
from sim.report.serving_runs import read_runs, validate_serving_runs

RUNS = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "vllm_v1_bursts.csv"


@pytest.fixture(scope="module")
def result():
    return validate_serving_runs(RUNS)


def test_every_measured_run_is_predicted_once(result):
    assert result.rows.height == read_runs(RUNS).height == 12
    assert result.rows["run"].n_unique() == 12
    for metric in ("ttft", "tpot", "duration"):
        assert result.rows[f"predicted_{metric}"].is_finite().all()
        assert (result.rows[f"predicted_{metric}"] > 0).all()


def test_kv_cache_of_each_deployment_is_what_its_startup_log_says():
    """The logged "Available KV cache memory" of each (model, utilization): fleetsim's budget within 5%."""
    for row in read_runs(RUNS).unique(["model", "gpu_memory_utilization"]).iter_rows(named=True):
        b = memory_budget(load_model(row["model"]), load_gpu(row["gpu"]), Plan(tp=row["tp"]),
                          gpu_memory_utilization=row["gpu_memory_utilization"], block_size=16,
                          max_batched_tokens=row["max_num_batched_tokens"], max_num_seqs=256)
        assert b.kv_bytes / 2**30 == pytest.approx(row["logged_kv_gib"], rel=0.05)


def test_held_apart_error_of_the_vllm_v1_preset(result, capsys):
    with capsys.disabled():
        for metric in ("ttft", "tpot", "duration"):
            n, median, p90 = result.summary(metric)
            print(f"\nvLLM V1 runs, {metric}: {n} runs, median {median:.1%}, p90 {p90:.1%}")
    assert result.summary("tpot")[1] <= 0.10 and result.summary("tpot")[2] <= 0.15
    assert result.summary("duration")[1] <= 0.10 and result.summary("duration")[2] <= 0.15
    assert result.summary("ttft")[1] <= 0.10


def test_runs_rank_by_tpot_as_measured(result):
    """Within each model the runs order by predicted TPOT as they do by measured TPOT: rising with the prompts in
    flight, and for Qwen2.5-32B not monotone once the KV cache is full (measured 80.0, 76.7, 77.7 ms at 50, 75, 100
    prompts: preemptions cap the batch), which the prediction reproduces."""
    for model in result.rows["model"].unique():
        rows = result.rows.filter(pl.col("model") == model)
        by_measured = rows.sort("mean_tpot_ms")["run"].to_list()
        by_predicted = rows.sort("predicted_tpot")["run"].to_list()
        assert by_predicted == by_measured, model
