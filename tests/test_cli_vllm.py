"""The CLI speaks vLLM's benchmark language where users come from: --version, vLLM's result keys in --json (with
--percentile-metrics and --metric-percentiles), standard deviations, ITL in --compare, JCT in seconds."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from sim._version import __version__
from sim.cli import app
from sim.metrics.itl import Weighted

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"fleetsim {__version__}"


def test_json_carries_vllms_result_keys_beside_ours(tmp_path):
    res = runner.invoke(app, ["run", "--num-requests", "120", "--json", "--out", str(tmp_path / "o"),
                              "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "25,50,99.9"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    req = pl.read_parquet(tmp_path / "o" / "requests.parquet").filter(pl.col("status") == "finished")
    ttft = req["ttft_s"].to_numpy()
    assert s["completed"] == req.height and s["request_throughput"] == s["throughput_rps"]
    assert s["output_throughput"] == s["output_tokens_per_s"]
    assert s["total_output_tokens"] == int(req["output_tokens"].sum())
    assert s["median_ttft_ms"] == pytest.approx(s["ttft_p50_s"] * 1e3, rel=1e-12)
    assert s["mean_ttft_ms"] == pytest.approx(ttft.mean() * 1e3, rel=1e-12)
    assert s["std_ttft_ms"] == pytest.approx(ttft.std() * 1e3, rel=1e-12)
    assert s["ttft_std_s"] == pytest.approx(ttft.std(), rel=1e-12)
    assert s["p25_ttft_ms"] == pytest.approx(np.percentile(ttft, 25) * 1e3, rel=1e-12)
    assert s["p99.9_e2el_ms"] == pytest.approx(np.percentile(req["e2e_s"].to_numpy(), 99.9) * 1e3, rel=1e-12)
    assert s["median_itl_ms"] == pytest.approx(s["itl_p50_s"] * 1e3, rel=1e-12)
    assert "p99_ttft_ms" not in s  # only the percentiles asked for
    default = json.loads(runner.invoke(app, ["run", "--num-requests", "60", "--json"]).stdout)
    assert {"p99_ttft_ms", "p99_tpot_ms", "p99_itl_ms"} <= set(default) and "mean_e2el_ms" not in default


def test_weighted_std_is_the_expanded_arrays():
    rng = np.random.default_rng(1)
    for _ in range(50):
        values = np.sort(rng.exponential(0.02, rng.integers(1, 40)))
        counts = rng.integers(1, 9, len(values))
        w = Weighted(values, counts)
        assert w.std() == pytest.approx(np.std(w.expand()), rel=1e-9, abs=1e-15)


def test_compare_reports_inter_token_latency_from_a_vllm_result(tmp_path):
    res = runner.invoke(app, ["run", "--trace", str(FIXTURES / "vllm_bench_result.json"), "--compare", "--json",
                              "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["compare"]
    metrics = {r["metric"] for r in rows}
    assert {"ttft", "tpot", "e2e", "itl_p50", "itl_max"} <= metrics
    doc = json.loads((FIXTURES / "vllm_bench_result.json").read_text())
    gaps = [g for g, err in zip(doc["itls"], doc.get("errors", [""] * len(doc["itls"]))) if g and not err]
    measured = next(r for r in rows if r["metric"] == "itl_max" and r["statistic"] == "mean")["measured_s"]
    assert measured == pytest.approx(np.mean([max(g) for g in gaps]), rel=1e-12)


def test_agent_runs_show_job_completion_in_seconds():
    res = runner.invoke(app, ["run", "--agents", "2", "--jobs", "4", "--turns", "2"])
    assert res.exit_code == 0, res.output
    assert "job completion (s)" in res.stdout and "job (JCT)" not in res.stdout
