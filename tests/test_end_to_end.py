"""End-to-end validation on Splitwise's measured prompt and per-token times: the split holds, the fit never sees the
rows it is scored on, and the held-apart error stays where docs/validation.md reports it."""

import polars as pl
import pytest

from sim.report.end_to_end import CALIBRATION_TP, fit_engine, read_perf_model, validate_splitwise


@pytest.fixture(scope="module")
def perf_model(shared_data):
    return shared_data / "calibration" / "splitwise_perf_model" / "perf_model.csv"


def test_the_split_is_by_tp_and_faulty_rows_are_left_out(perf_model):
    df = read_perf_model(perf_model)
    cal, val = df.filter(pl.col("split") == "calibration"), df.filter(pl.col("split") == "validation")
    assert set(cal["tensor_parallel"]) == {CALIBRATION_TP} and CALIBRATION_TP not in set(val["tensor_parallel"])
    assert set(val["model"]) == {"llama2-70b", "bloom-176b"} and set(cal["model"]) == {"llama2-70b"}
    # Twice the prompts in less time is a measurement fault: Llama-2-70B TP2 batch 64 on both GPUs.
    faulty = df.filter((pl.col("model") == "llama2-70b") & (pl.col("tensor_parallel") == 2)
                       & (pl.col("batch_size") == 64))
    assert faulty.height == 0
    assert df.height == 150 and "h100-80gb-pcap" not in set(df["hardware"])


def test_the_fit_never_sees_the_validation_rows(perf_model):
    df = read_perf_model(perf_model)
    fit = fit_engine(df.filter(pl.col("split") == "calibration"))
    garbled = df.with_columns(pl.when(pl.col("split") == "validation").then(pl.col("prompt_time") * 3)
                              .otherwise(pl.col("prompt_time")).alias("prompt_time"))
    assert fit_engine(garbled.filter(pl.col("split") == "calibration")) == fit
    assert 0 < fit.step_overhead_s < 0.05 and fit.eager_layer_s >= 0 and fit.seq_overhead_s >= 0


def test_held_apart_end_to_end_error(perf_model, capsys):
    r = validate_splitwise(perf_model)
    with capsys.disabled():
        for metric in ("prompt", "token"):
            n, median, p90 = r.summary("validation", metric)
            print(f"\nSplitwise {metric} time, {n} held-apart rows: median {median:.1%}, p90 {p90:.1%}")
    # Per-token time meets the 10% target; prompt time misses it (docs/validation.md says why).
    assert r.summary("validation", "token")[1] <= 0.10
    assert r.summary("validation", "prompt")[1] <= 0.12
    bloom = r.rows.filter(pl.col("model") == "bloom-176b")
    assert bloom["prompt_error"].abs().median() < 0.10 and bloom["token_error"].abs().median() < 0.10


def test_docs_validation_table_is_what_validate_py_prints_now(shared_data):
    """docs/validation.md's summary is the current output of benchmarks/validate.py (rerun it with --update-docs
    after a change to the tables or the model)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("validate", root / "benchmarks" / "validate.py")
    validate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(validate)
    e2e, note = validate.end_to_end_rows(shared_data)
    report = validate.table(validate.operator_rows(shared_data) + e2e) + "\n\n" + note
    doc = (root / "docs" / "validation.md").read_text()
    assert doc.split(validate.BEGIN, 1)[1].split(validate.END, 1)[0].strip() == report.strip()
