"""Trace replay: every reader on real files and on fixtures written from each format's documentation, sniffing,
transformations, bad input, a fuzz test, rate scaling, `fleetsim trace inspect` and `replay --compare`."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import sim
from sim.cli import app
from sim.errors import FleetsimError
from sim.report.compare import errors, paired
from sim.workload.traces import FORMATS, read_trace
from sim.workload.transform import Transform, apply

FIXTURES = Path(__file__).parent / "fixtures"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---- readers on real files -------------------------------------------------------------------------------------
def test_mooncake_traces_real_files(shared_data):
    conv = read_trace(shared_data / "traces/mooncake_fast25/conversation_trace.jsonl")
    synth = read_trace(shared_data / "traces/mooncake_fast25/synthetic_trace.jsonl")
    assert (conv.fmt, conv.table.height, conv.block_tokens) == ("mooncake", 12031, 512)
    assert synth.table.height == 3993
    assert conv.table["arrival_s"].is_sorted() and conv.table["arrival_s"][0] == 0.0
    assert conv.table["request_id"].to_list() == list(range(12031))  # file order kept


@pytest.mark.parametrize("rel,sessions", [("weka_claude_code/sessions", 25),
                                          ("weka_claude_code/requests_nohash.csv.gz", 710)])
def test_agent_traces_flatten_to_requests_of_sessions(shared_data, rel, sessions):
    t = read_trace(shared_data / "traces" / rel)
    assert t.fmt == "agent"
    assert t.table["session_id"].n_unique() == sessions
    assert t.table["input_tokens"].min() >= 1
    assert any("agent trace" in n for n in t.notes)


def test_trtllm_agent_trace_is_sniffed(shared_data):
    f = sorted((shared_data / "traces/trtllm_scaffolding").glob("*.json"))[0]
    assert read_trace(f).fmt == "agent"


# ---- readers on fixtures written from each format's documentation ----------------------------------------------
def test_vllm_benchmark_result_keeps_measured_latencies():
    t = read_trace(FIXTURES / "vllm_bench_result.json")
    doc = json.loads((FIXTURES / "vllm_bench_result.json").read_text())
    assert t.fmt == "vllm-bench" and t.table.height == 119  # one failed request dropped
    assert any("1 failed request" in n for n in t.notes) and any("regenerated" in n for n in t.notes)
    assert t.measured == ["ttft_s", "tpot_s", "e2e_s", "itl_p50_s", "itl_max_s"]
    row = t.table.filter(pl.col("request_id") == 0).row(0, named=True)
    assert row["itl_max_s"] == pytest.approx(max(doc["itls"][0]))
    assert row["itl_p50_s"] == pytest.approx(float(np.median(doc["itls"][0])))
    assert row["ttft_s"] == pytest.approx(doc["ttfts"][0])
    assert row["e2e_s"] == pytest.approx(doc["ttfts"][0] + sum(doc["itls"][0]))
    assert row["tpot_s"] == pytest.approx(sum(doc["itls"][0]) / (doc["output_lens"][0] - 1))
    span = t.table["arrival_s"].max()
    assert (t.table.height - 1) / span == pytest.approx(doc["request_rate"], rel=0.3)  # Poisson at the logged rate


def test_openai_log_both_shapes_models_sessions_and_latencies():
    t = read_trace(FIXTURES / "openai_log.jsonl")
    assert t.fmt == "openai" and t.table.height == 80
    assert set(t.table["model"]) == {"llama-3.1-8b", "llama-3.1-70b"}
    assert t.table["session_id"].drop_nulls().n_unique() == 7
    assert t.measured == ["ttft_s", "tpot_s", "e2e_s"]
    assert (t.table["e2e_s"] >= t.table["ttft_s"]).all()


def test_burstgpt_drops_failed_requests_with_a_count():
    t = read_trace(FIXTURES / "burstgpt.csv")
    raw = pl.read_csv(FIXTURES / "burstgpt.csv")
    failed = int((raw["Response tokens"] == 0).sum())
    assert failed == 6 and t.fmt == "burstgpt"
    assert t.table.height == raw.height - failed
    assert any(f"{failed} failed request(s)" in n for n in t.notes)
    assert set(t.table["model"]) == {"ChatGPT", "GPT-4"}


@pytest.mark.parametrize("name,fmt,rows", [("splitwise.csv", "splitwise", 60), ("vidur.csv", "vidur", 60),
                                           ("azure_2024.csv", "azure", 50)])
def test_simulator_and_azure_2024_csvs(name, fmt, rows):
    t = read_trace(FIXTURES / name)
    raw = pl.read_csv(FIXTURES / name)
    assert (t.fmt, t.table.height) == (fmt, rows)
    assert t.table["input_tokens"].sum() == raw[raw.columns[-2 if fmt != "azure" else 1]].sum()
    assert t.table["arrival_s"].is_sorted()


def test_format_override_and_unknown_formats(tmp_path):
    assert read_trace(FIXTURES / "vidur.csv", "vidur").fmt == "vidur"
    with pytest.raises(FleetsimError, match="missing column"):
        read_trace(FIXTURES / "vidur.csv", "azure")
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(FleetsimError, match="unknown trace format .* pass --format"):
        read_trace(odd)
    with pytest.raises(FleetsimError, match="trace format 'parquet' is unknown"):
        read_trace(odd, "parquet")
    assert set(FORMATS) >= {"azure", "burstgpt", "mooncake", "splitwise", "vidur", "vllm-bench", "openai", "agent"}


# ---- bad input ----------------------------------------------------------------------------------------------------
AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize("body,message", [
    ("", "empty file"),
    (AZ, "no rows after the header"),
    ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.68,374\n", "unknown trace format"),
    (AZ + "2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47.00,abc,12\n",
     ":3:2: field 'ContextTokens' must be a non-negative integer, got 'abc'"),
    (AZ + "2023-11-16 18:15:46.68,374,44\nyesterday,10,12\n", ":3:1: field 'TIMESTAMP' must be a timestamp"),
    (AZ + "2023-11-16 18:15:46.68,-5,44\n", ":2:2: field 'ContextTokens' must be a non-negative integer, got '-5'"),
    (AZ + "2023-11-16 18:15:46.68,5,0\n", ":2: field 'output_tokens' must be an integer from 1 to 10,000,000, got 0"),
    (AZ + "2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47.00,10,12,99\n", ":3:4: 4 fields where the header has 3"),
])
def test_bad_traces_get_one_clear_line_and_no_output(tmp_path, body, message):
    f = tmp_path / "t.csv"
    f.write_text(body)
    out = tmp_path / "out"
    res = invoke("replay", f, "--out", out)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output + res.stderr
    assert not out.exists()


def test_missing_columns_name_them(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("arrived_at,num_prefill_tokens\n0.1,5\n")
    with pytest.raises(FleetsimError, match="missing column.*'num_decode_tokens'"):
        read_trace(f, "vidur")


def test_skip_bad_rows_counts_them_and_shows_a_sample(tmp_path):
    lines = [AZ.strip()] + [f"2023-11-16 18:15:{i:02d}.00,{'x' if i % 5 == 0 else 100 + i},7" for i in range(40)]
    f = tmp_path / "t.csv"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(FleetsimError, match="--skip-bad-rows"):
        read_trace(f)
    t = read_trace(f, skip_bad_rows=True)
    assert t.table.height == 32
    note = next(n for n in t.notes if "malformed" in n)
    assert note.startswith("8 malformed row(s) skipped") and f"{f}:2:2" in note
    res = invoke("replay", f, "--skip-bad-rows", "--model", "llama-3.1-8b", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["num_requests"] == 32
    assert "8 malformed row(s) skipped" in res.stderr


def test_out_of_order_timestamps_are_sorted_with_a_note(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"timestamp": t, "input_length": 10 + i, "output_length": 5}) + "\n"
                         for i, t in enumerate([0, 3000, 1000, 2000])))
    t = read_trace(f)
    assert t.table["arrival_s"].to_list() == [0.0, 1.0, 2.0, 3.0]
    assert t.table["input_tokens"].to_list() == [10, 12, 13, 11]  # rows move with their times
    assert any("out of order at 1 row" in n for n in t.notes)


def _corrupt(text: str, data) -> str:  # noqa: ANN001
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        at = data.draw(st.integers(0, len(line)))
        junk = data.draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8))
        cut = data.draw(st.integers(0, 6))
        lines[i] = line[:at] + junk + line[at + cut:]
    return "".join(lines)


SEEDS = {"azure": AZ + "".join(f"2023-11-16 18:15:{i:02d}.5,{10 + i},{3 + i}\n" for i in range(8)),
         "mooncake": "".join(json.dumps({"timestamp": 100 * i, "input_length": 600 + i, "output_length": 9,
                                         "hash_ids": [1, 2 + i]}) + "\n" for i in range(8)),
         "openai": "".join(json.dumps({"timestamp": 1.7e9 + i, "usage": {"prompt_tokens": 9 + i,
                                                                         "completion_tokens": 4}}) + "\n"
                           for i in range(8)),
         "burstgpt": "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     + "".join(f"{i},ChatGPT,{20 + i},{i % 3},{25 + i},API log\n" for i in range(8))}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(SEEDS)), skip=st.booleans(), data=st.data())
def test_fuzzed_traces_never_raise_anything_but_a_clear_error(tmp_path, fmt, skip, data):
    f = tmp_path / f"fuzz-{fmt}.txt"
    f.write_text(_corrupt(SEEDS[fmt], data), encoding="utf-8")
    try:
        t = read_trace(f, data.draw(st.sampled_from(["auto", fmt])), skip_bad_rows=skip)
    except FleetsimError as exc:
        assert "\n" not in str(exc)
        return
    assert t.table.height >= 1 and t.table["input_tokens"].min() >= 1 and t.table["output_tokens"].min() >= 1
    assert t.table["arrival_s"].is_sorted() and np.isfinite(t.table["arrival_s"].to_numpy()).all()


# ---- transformations -------------------------------------------------------------------------------------------------
def test_transformations_window_rate_sample_model_and_clip():
    t = read_trace("azure-conv").table
    w, _ = apply(t, Transform(start_s=600, duration_s=300), 0)
    expected = t.filter((pl.col("arrival_s") >= 600) & (pl.col("arrival_s") < 900)).height
    assert w.height == expected and w["arrival_s"][0] == 0.0 and w["arrival_s"].max() < 300
    fast, _ = apply(w, Transform(rate_scale=2.0), 0)
    assert fast["arrival_s"].max() == pytest.approx(w["arrival_s"].max() / 2)
    half, _ = apply(t, Transform(sample=0.5), 3)
    assert abs(half.height / t.height - 0.5) < 0.02
    assert half.equals(apply(t, Transform(sample=0.5), 3)[0])  # seeded
    clipped, n = apply(t, Transform(max_tokens=2048), 0)
    over = t.filter(pl.col("input_tokens") + pl.col("output_tokens") > 2048).height
    assert n == over > 0
    assert (clipped["input_tokens"] + clipped["output_tokens"]).max() <= 2048
    logs = read_trace(FIXTURES / "openai_log.jsonl").table
    big, _ = apply(logs, Transform(model="llama-3.1-70b"), 0)
    assert big.height == 20 and set(big["model"]) == {"llama-3.1-70b"}
    with pytest.raises(FleetsimError, match="no request of model 'gpt-5'"):
        apply(logs, Transform(model="gpt-5"), 0)
    with pytest.raises(FleetsimError, match="the trace has no model column"):
        apply(t, Transform(model="x"), 0)
    with pytest.raises(FleetsimError, match="workload.rate_scale: expected a factor from 1e-6 to 1e6"):
        Transform(rate_scale=-1)


def test_replaying_azure_conv_faster_raises_queueing_monotonically():
    delays = []
    for k in (1.0, 2.0, 4.0):
        r = sim.run(model="llama-3.1-8b", gpu="h100", tp=1, num_gpus=1,
                    **{"workload.trace": "azure-conv", "workload.num_requests": 1445, "workload.rate_scale": k})
        delays.append(r.summary["queue_delay_mean_s"])
        assert r.summary["num_requests"] == 1445  # the same requests, closer together
    assert delays[0] < delays[1] < delays[2]


def test_a_window_is_cut_in_simulated_time_after_rescaling():
    """--duration 300 with the trace replayed twice as fast keeps 300 s of simulated arrivals: the requests of the
    trace's first 600 s (it used to cut 300 s of the trace, then compress them into 150 s)."""
    def run(**w):
        return sim.run(model="llama-3.1-8b", gpu="h100", tp=1, num_gpus=1,
                       **{"workload.trace": "azure-conv", **{f"workload.{k}": v for k, v in w.items()}})

    fast = run(duration_s=300.0, rate_scale=2.0)
    assert fast.summary["num_requests"] == run(duration_s=600.0).summary["num_requests"]
    assert 290.0 < fast.requests["arrival_s"].max() < 300.0
    at8 = run(duration_s=300.0, rate=8.0)
    assert at8.summary["num_requests"] == 2400 and at8.summary["offered_rps"] == pytest.approx(8.0)
    assert at8.requests["arrival_s"].max() < 300.0


def test_max_tokens_clips_and_the_run_counts_it():
    r = sim.run(model="llama-3.1-8b", gpu="h100", **{"workload.trace": "azure-code", "workload.max_tokens": 1024,
                                                    "workload.num_requests": 400})
    assert r.summary["requests_clipped"] > 0
    assert (r.requests["input_tokens"] + r.requests["output_tokens"]).max() <= 1024


# ---- inspect and compare -------------------------------------------------------------------------------------------
def test_trace_inspect_reports_and_writes_figures(tmp_path):
    res = invoke("trace", "inspect", "mooncake-conv", "--out", tmp_path / "i", "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["rows"] == 2000 and s["format"] == "mooncake" and 0.0 < s["prefix_sharing"] < 1.0
    assert s["input_tokens"]["p50"] <= s["input_tokens"]["p90"] <= s["input_tokens"]["p99"]
    assert {p.name for p in (tmp_path / "i").iterdir()} == {"inspect.html", "inspect.json", "trace.parquet",
                                                             "plotly.min.js"}
    assert 'src="plotly.min.js"' in (tmp_path / "i/inspect.html").read_text()
    res = invoke("trace", "inspect", FIXTURES / "vllm_bench_result.json", "--out", tmp_path / "v")
    assert res.exit_code == 0 and "measured TTFT" in res.stdout
    res = invoke("trace", "inspect", tmp_path / "missing.csv")
    assert res.exit_code == 2 and "no such file" in res.stderr


def test_compare_is_exact_when_the_trace_measured_what_we_predict(tmp_path):
    """A trace whose measured latencies are our own predictions compares with zero error, request by request:
    request i of the simulation is row i of the replayed table."""
    first = sim.run(model="llama-3.1-8b", gpu="h100", **{"workload.trace": str(FIXTURES / "openai_log.jsonl")})
    fin = first.requests.sort("request_id")
    logs = [json.loads(line) for line in (FIXTURES / "openai_log.jsonl").read_text().splitlines()]
    order = np.argsort([r.get("timestamp", r.get("created")) for r in logs], kind="stable")
    for rank, i in enumerate(order):
        logs[i]["ttft_ms"] = fin["ttft_s"][rank] * 1e3
        logs[i]["latency_ms"] = fin["e2e_s"][rank] * 1e3
    f = tmp_path / "ours.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in logs))
    again = sim.run(model="llama-3.1-8b", gpu="h100", **{"workload.trace": str(f)})
    errs = errors(paired(again.requests, again.trace))
    assert set(errs["metric"]) == {"ttft", "tpot", "e2e"}
    assert errs["error"].abs().max() < 1e-9
    res = invoke("replay", FIXTURES / "vllm_bench_result.json", "--model", "llama-3.1-8b", "--compare",
                 "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    assert "predicted vs measured" in res.stdout
    assert {"compare.html", "compare.parquet", "compare_requests.parquet"} <= {p.name for p in (tmp_path / "c").iterdir()}
    res = invoke("replay", FIXTURES / "vidur.csv", "--compare", "--out", tmp_path / "n")
    assert res.exit_code == 2 and "carries no measured latencies" in res.stderr and not (tmp_path / "n").exists()
