"""End-to-end validation on Splitwise's measured prompt and per-token times: the split holds, no fit sees the
rows it is scored on, and the held-apart error stays where docs/validation.md reports it."""

import dataclasses

import numpy as np
import polars as pl
import pytest

from sim.report.end_to_end import TP_DEGREES, fit_engine, predict, read_perf_model, validate_splitwise


@pytest.fixture(scope="module")
def perf_model(shared_data):
    return shared_data / "calibration" / "splitwise_perf_model" / "perf_model.csv"


@pytest.fixture(scope="module")
def result(perf_model):
    return validate_splitwise(perf_model)


def test_faulty_rows_and_unmodelled_hardware_are_left_out(perf_model):
    df = read_perf_model(perf_model)
    # Twice the prompts in less time is a measurement fault: Llama-2-70B TP2 batch 64 on both GPUs.
    faulty = df.filter((pl.col("model") == "llama2-70b") & (pl.col("tensor_parallel") == 2)
                       & (pl.col("batch_size") == 64))
    assert faulty.height == 0
    assert df.height == 150 and "h100-80gb-pcap" not in set(df["hardware"])
    assert set(df["tensor_parallel"]) == set(TP_DEGREES)


def test_each_tp_degree_is_predicted_by_a_fit_that_never_saw_it(perf_model, result):
    df = read_perf_model(perf_model)
    assert result.rows.height == df.height  # every row predicted exactly once
    for tp, fit in result.fits.items():
        garbled = df.with_columns(pl.when(pl.col("tensor_parallel") == tp).then(pl.col("prompt_time") * 3)
                                  .otherwise(pl.col("prompt_time")).alias("prompt_time"))
        assert fit_engine(garbled.filter(pl.col("tensor_parallel") != tp)) == fit
        held = result.rows.filter(pl.col("tensor_parallel") == tp)
        np.testing.assert_allclose(held["predicted_prompt_time"], predict(held, fit)[:, 0])
    # BLOOM is measured at TP8 only, so its rows come from a fit on Llama-2-70B's TP2 and TP4 rows alone.
    assert set(result.rows.filter(pl.col("model") == "bloom-176b")["tensor_parallel"]) == {8}


def test_fitted_engine_constants_are_physical_and_agree_across_folds(result):
    for fit in result.fits.values():
        assert 0 < fit.step_overhead_s + fit.worker_overhead_s * 2 < 0.05
        assert fit.eager_layer_s >= 0 and fit.seq_overhead_s >= 0 and fit.worker_overhead_s >= 0
    # The per-worker cost is what lets the fit follow the small-prompt step growing with TP (48, 49 and 58 ms at
    # TP2/4/8 on H100): every fold finds one, and the folds agree on it within a factor of two.
    workers = [f.worker_overhead_s for f in result.fits.values()]
    assert min(workers) > 0.5e-3 and max(workers) < 2 * min(workers)


def test_more_tp_workers_cost_more_cpu_per_step(perf_model, result):
    """A step of one short prompt: the GPU work shrinks with TP, the per-worker CPU cost grows; with the fitted
    constants a TP8 step costs more than the same constants without the per-worker term, by 8 workers' worth."""
    df = read_perf_model(perf_model).filter((pl.col("model") == "llama2-70b") & (pl.col("prompt_size") == 128)
                                            & (pl.col("batch_size") == 1) & (pl.col("tensor_parallel") == 8))
    fit = result.fits[8]
    without = dataclasses.replace(fit, worker_overhead_s=0.0)
    gap = predict(df, fit) - predict(df, without)
    np.testing.assert_allclose(gap, 8 * fit.worker_overhead_s * 1e3, rtol=1e-9)


def test_held_apart_end_to_end_error(result, capsys):
    with capsys.disabled():
        for metric in ("prompt", "token"):
            n, median, p90 = result.summary(metric)
            print(f"\nSplitwise {metric} time, {n} held-apart rows: median {median:.1%}, p90 {p90:.1%}")
    # Both meet issue 12's 10% median target over every row; TP8's per-token time alone does not (docs say so).
    assert result.summary("prompt")[1] <= 0.10
    assert result.summary("token")[1] <= 0.10
    assert result.summary("token", 8)[1] <= 0.16


def test_docs_validation_table_is_what_validate_py_prints_now(shared_data):
    """docs/validation.md's summary is the current output of benchmarks/validate.py (rerun it with --update-docs
    after a change to the tables or the model)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("validate", root / "benchmarks" / "validate.py")
    validate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(validate)
    report = validate.report(shared_data)
    doc = (root / "docs" / "validation.md").read_text()
    assert doc.split(validate.BEGIN, 1)[1].split(validate.END, 1)[0].strip() == report.strip()
    # The per-operator table shipped for notebook 06 is the same rows.
    import polars as pl
    from polars.testing import assert_frame_equal

    assert_frame_equal(pl.read_csv(root / "benchmarks" / "data" / "operator_errors.csv"),
                       validate.operator_table(shared_data), check_exact=False, rel_tol=1e-12)
