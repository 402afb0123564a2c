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


def test_goodput_flags_set_the_slos_and_count_requests_meeting_every_target(tmp_path):
    a = runner.invoke(app, ["run", "--num-requests", "200", "--json", "--out", str(tmp_path / "a"),
                            "--goodput", "ttft:100 e2el:2000", "--goodput", "itl:30"])
    b = runner.invoke(app, ["run", "--num-requests", "200", "--json", "--slo-ttft", "0.1", "--slo-e2el", "2",
                            "--slo-itl", "0.03"])
    assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
    sa, sb = json.loads(a.stdout), json.loads(b.stdout)
    assert sa["goodput_rps"] == sb["goodput_rps"] and sa["slo_attainment"] == sb["slo_attainment"]
    assert (sa["slo_ttft_s"], sa["slo_e2el_s"], sa["slo_itl_s"]) == (0.1, 2.0, 0.03)
    req = pl.read_parquet(tmp_path / "a" / "requests.parquet").filter(pl.col("status") == "finished")
    good = req.filter((pl.col("ttft_s") <= 0.1) & (pl.col("tpot_s").fill_null(0) <= sa["slo_tpot_s"])
                      & (pl.col("e2e_s") <= 2.0) & (pl.col("itl_max_s").fill_null(0) <= 0.03))
    assert 0 < good.height < req.height  # the targets bite
    assert sa["slo_attainment"] == pytest.approx(good.height / req.height)
    assert sa["request_goodput"] == sa["goodput_rps"]
    # Looser end-to-end target, more good requests.
    loose = json.loads(runner.invoke(app, ["run", "--num-requests", "200", "--json", "--goodput",
                                           "ttft:100 e2el:20000 itl:30"]).stdout)
    assert loose["slo_attainment"] > sa["slo_attainment"]


def test_search_misses_name_the_end_to_end_target():
    res = runner.invoke(app, ["search", "--num-gpus", "1", "--num-requests", "60", "--goodput", "e2el:200", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "no_plan_meets_slo"
    assert any("p90 E2EL" in c["misses"] for c in doc["closest"])
