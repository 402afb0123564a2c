"""Bad input never crashes, never takes the machine's memory, never passes silently: one line naming the field,
file or row and what was expected, exit 2, nothing written. Each case is one the issue found failing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app

runner = CliRunner()
SMALL = ["--num-requests", "20"]
AGENTS = ["--agents", "2", "--jobs", "2", "--turns", "2"]

FLAG_CASES = [
    (["run", "--kv-offload-gb", "inf", *AGENTS, "--kv-policy", "offload"], "engine.kv_offload_gb"),
    (["run", "--seed", "-1", "--arrival", "poisson", *SMALL], "seed: expected a non-negative integer"),
    (["run", "--arrival", "poisson", "--rate", "inf", *SMALL], "workload.rate"),
    (["run", "--arrival", "poisson", "--rate", "1e9", "--duration", "600"], "workload.rate"),
    (["run", "--arrival", "poisson", "--rate", "1e6", "--duration", "600000"], "requests: 600,000,000,000 would need"),
    (["run", "--rate-scale", "1e-310", *SMALL], "workload.rate_scale"),
    (["run", "--tool-time", "fixed:inf", *AGENTS], "agents.tool_time"),
    (["run", "--model", "gpt-oss-20b", "--moe-routing", "zipf:nan", *SMALL, "--ep", "8", "--attn-dp", "8"],
     "moe routing"),
    (["run", "--slo-ttft", "nan", *SMALL], "slo.ttft_s"),
    (["run", "--slo-tpot", "inf", *SMALL], "slo.tpot_s"),
    (["run", "--num-gpus", "1000000000000"], "--num-gpus: 1,000,000,000,000 GPUs"),
    (["run", "--replicas", "1000000000000"], "--replicas"),
    (["run", "--arrival", "poisson", "--num-requests", "100000000000"], "requests: 100,000,000,000 would need"),
    (["run", "--agents", "2", "--turns", "1000000000"], "agent calls (jobs x (turns + sub-agents"),
    (["run", "--agents", "2", "--parallel-tools", "1000000000000"], "tool calls"),
    (["run", "--agents", "2", "--subagents", "-1"], "agents.subagents: expected a non-negative integer"),
    (["run", "--agents", "2", "--subagent-turns", "0"], "agents.subagent_turns: expected a positive integer"),
    (["run", "--agents", "2", "--jobs", "100000", "--subagents", "100000"], "agent calls (jobs x (turns + sub-agents"),
    (["run", "--agents", "2", "--jobs", "10000000000"], "agent calls"),
    (["run", "--input-len", "fixed:1e30", "--arrival", "poisson", *SMALL], "workload.input_len"),
    (["run", "--output-len", "fixed:0", "--arrival", "poisson", *SMALL], "workload.output_len"),
    (["run", "--step-overhead", "nan", *SMALL], "engine.step_overhead_s"),
    (["run", "--gpu-memory-utilization", "nan", *SMALL], "engine.gpu_memory_utilization"),
    (["run", "--duration", "nan"], "workload.duration_s"),
    (["run", "--start", "nan", *SMALL], "workload.start_s"),
    (["search", "--num-gpus", "1048576", *SMALL], "search: 1,048,576 GPUs give about"),
    (["search", "--moe-routing", "bogus", *SMALL, "--model", "gpt-oss-20b", "--num-gpus", "1"], "moe routing"),
    (["search", "--price", "nan", *SMALL, "--num-gpus", "1"], "energy.gpu_usd_per_hour"),
    (["search", "--price", "-1", *SMALL, "--num-gpus", "1"], "energy.gpu_usd_per_hour"),
    (["search", "--num-gpus", "8", "--tp", "3", "--all-gpus", *SMALL], "search: no plan in this space (--tp 3"),
    (["search", "--price", "inf", *SMALL, "--num-gpus", "1"], "energy.gpu_usd_per_hour"),
    (["run", "--cv", "inf", "--arrival", "gamma", *SMALL], "workload.cv"),
    (["run", "--pue", "0.5", *SMALL], "energy.pue: expected a power usage effectiveness >= 1"),
    (["run", "--metric-percentiles", "0", *SMALL], "--metric-percentiles: expected percentiles in (0, 100]"),
    (["run", "--goodput", "latency:5", *SMALL], "--goodput: expected KEY:MILLISECONDS"),
    (["run", "--goodput", "ttft:-5", *SMALL], "--goodput ttft: expected a positive, finite number of milliseconds"),
    (["run", "--goodput", "ttft:nan", *SMALL], "--goodput ttft"),
    (["run", "--goodput", "ttft:100", "--slo-ttft", "1", *SMALL], "--goodput and --slo-ttft both set that target"),
    (["run", "--slo-e2el", "0", *SMALL], "slo.e2el_s"),
    (["run", "--slo-itl", "inf", *SMALL], "slo.itl_s"),
    (["search", "--goodput", "itl:30", "--capacity", *SMALL, "--num-gpus", "1"], "slo.itl_s: capacity mode"),
    (["run", "--metric-percentiles", "50,abc", *SMALL], "--metric-percentiles: expected comma-separated"),
    (["run", "--metric-percentiles", "nan", *SMALL], "--metric-percentiles"),
    (["run", "--percentile-metrics", "ttft,latency", *SMALL], "--percentile-metrics: expected a comma-separated"),
    (["run", "--pue", "nan", *SMALL], "energy.pue"),
    (["run", "--power-cap", "-5", *SMALL], "energy.power_cap_w: expected a positive number of watts"),
    (["run", "--power-cap", "nan", *SMALL], "energy.power_cap_w"),
    (["run", "--power-cap", "900", *SMALL], "power_cap_w: expected watts between the GPU's active floor"),
    (["run", "--power-cap", "100", *SMALL], "power_cap_w: expected watts between the GPU's active floor"),
    (["run", "--electricity-price", "-0.1", *SMALL], "energy.electricity_usd_per_kwh"),
    (["run", "--electricity-price", "inf", *SMALL], "energy.electricity_usd_per_kwh"),
    (["run", "--price", "0", *SMALL], "energy.gpu_usd_per_hour: expected a positive, finite $/GPU-hour"),
    (["run", "--price", "nan", *SMALL], "energy.gpu_usd_per_hour"),
    (["run", "--prefill-replicas", "1000000000000", "--decode-replicas", "1", *SMALL],
     "disagg (prefill + decode GPUs): 1,000,000,000,001 GPUs"),
    (["run", "--prefill-replicas", "1", "--decode-replicas", "1000000000000", *SMALL],
     "disagg (prefill + decode GPUs): 1,000,000,000,001 GPUs"),
]


def _one_line_exit_2(res, expected: str) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    assert "Traceback" not in res.output


@pytest.mark.parametrize("args,expected", FLAG_CASES, ids=[" ".join(a[:3]) for a, _ in FLAG_CASES])
def test_bad_flags_are_one_line_exit_2_and_write_nothing(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(runner.invoke(app, args), expected)
    assert list(tmp_path.iterdir()) == []


HF = json.loads((Path(__file__).parent / "fixtures" / "qwen2-7b-instruct.config.json").read_text())
MOE = {**HF, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 512}
CONFIG_CASES = [
    ({**HF, "num_attention_heads": 0}, "num_attention_heads: expected a positive integer"),
    ({**HF, "hidden_size": "big"}, "hidden_size: expected a positive integer"),
    ({**HF, "hidden_size": None}, "hidden_size: expected a positive integer"),
    (5, "expected a JSON object"),
    ({**HF, "quantization_config": "fp8"}, "quantization_config: expected a JSON object"),
    ({**HF, "num_key_value_heads": 1000}, "num_key_value_heads (1000) must divide"),
    ({**HF, "sliding_window": -5}, "sliding_window: expected a positive integer"),
    ({**HF, "layer_types": ["sliding_attention"] * 28, "sliding_window": 4096}, "every layer is sliding"),
    ({**MOE, "num_experts_per_tok": 16}, "num_experts_per_tok (16) exceeds"),
    ({**MOE, "moe_intermediate_size": -512}, "moe_intermediate_size: expected a positive integer"),
]


@pytest.mark.parametrize("config,expected", CONFIG_CASES, ids=[e.split(":")[0][:30] for _, e in CONFIG_CASES])
def test_bad_model_configs_name_the_field(config, expected, tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(runner.invoke(app, ["run", "--model", str(path), *SMALL]), expected)


def test_deeply_nested_json_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _one_line_exit_2(runner.invoke(app, ["run", "--model", str(path), *SMALL]), "nested too deeply")


TOML_CASES = [
    ("engine = 5\n", "engine: expected a table"),
    ('gpu = ["h100"]\n', "gpu: expected a name or a path"),
    ("model = 5\n", "model: expected a name or a path"),
    ('[workload]\ncv = "high"\narrival = "gamma"\n', "workload.cv"),
    ("[engine]\nstep_overhead_s = nan\n", "engine.step_overhead_s"),
    ('[engine]\nchunked_prefill = "no"\n', "engine.chunked_prefill: expected true or false"),
    ("[engine]\nenable_prefix_caching = 1\n", "engine.enable_prefix_caching: expected true or false"),
    ('[workload]\noutput_len = 0\narrival = "poisson"\nnum_requests = 20\n', "workload.output_len"),
    ('workload = "azure-conv"\n', "workload: expected a table"),
    ("[engine]\nmax_num_seqs = 12.5\n", "engine.max_num_seqs: expected a positive integer"),
    # vLLM allocates an override as given: more blocks than the memory holds fails at start-up
    ("[engine]\nnum_gpu_blocks_override = 1000000000000\n[workload]\nnum_requests = 20\n",
     "engine.num_gpu_blocks_override=1,000,000,000,000: that many blocks need"),
]


@pytest.mark.parametrize("text,expected", TOML_CASES, ids=[e[:30] for _, e in TOML_CASES])
def test_bad_scenario_files_name_the_field(text, expected, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(text)
    _one_line_exit_2(runner.invoke(app, ["run", str(path)]), expected)


def test_unreadable_scenario_files(tmp_path):
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "bin.toml").write_bytes(bytes(range(256)))
    (tmp_path / "utf16.toml").write_bytes('model = "llama-3.1-8b"\n'.encode("utf-16"))
    for name, expected in (("dir.toml", "is a folder"), ("bin.toml", "not a UTF-8 text file"),
                           ("utf16.toml", "not a UTF-8 text file")):
        _one_line_exit_2(runner.invoke(app, ["run", str(tmp_path / name)]), expected)


BURSTGPT = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
TRACE_CASES = [
    ("t.csv", BURSTGPT + "nan,ChatGPT,10,10,20,Conversation log\n1.0,ChatGPT,10,10,20,Conversation log\n",
     ":2:1: field 'Timestamp' must be a number, got 'nan'"),
    ("t.csv", BURSTGPT + "1.0,ChatGPT,10,10,20,Conversation log\n-1e300,ChatGPT,10,10,20,Conversation log\n",
     ":3: field 'arrival_s' must be a finite time"),
    ("t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1e30,10\n",
     ":2:2: field 'ContextTokens' must be a non-negative integer, got '1e30'"),
    ("a.jsonl", '{"job": "j1", "type": "llm", "prompt_tokens": "lots", "output_tokens": 10}\n',
     "field 'prompt_tokens' must be a positive integer"),
    ("a.jsonl", '{"job": "j1", "type": "llm", "prompt_tokens": 10, "output_tokens": 10, "context": "x"}\n',
     "field 'context' must be a non-negative integer"),
    ("a.jsonl", '{"job": "j1", "type": "llm", "prompt_tokens": 1000000000000, "output_tokens": 10}\n',
     "field 'prompt_tokens' must be a positive integer up to 10,000,000, got 1000000000000"),
    ("b.json", json.dumps({"backend": "vllm", "input_lens": [10], "output_lens": [5], "ttfts": [0.1],
                           "itls": [["a"]], "request_rate": 1.0}), "itls[0]"),
    ("b.json", json.dumps({"backend": "vllm", "input_lens": [10, 10], "output_lens": [5, 5], "ttfts": [0.1, 0.1],
                           "itls": [[0.01], [0.01]], "request_rate": 1.0, "burstiness": -1}), "burstiness"),
]


@pytest.mark.parametrize("name,text,expected", TRACE_CASES, ids=[e[:30] for _, _, e in TRACE_CASES])
def test_bad_trace_rows_are_named(name, text, expected, tmp_path, monkeypatch):
    path = tmp_path / name
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["replay", str(path)])
    _one_line_exit_2(res, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_skip_bad_rows_skips_nan_inf_and_huge_token_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(BURSTGPT + "nan,ChatGPT,10,10,20,Conversation log\n1.0,ChatGPT,10,10,20,Conversation log\n"
                    "inf,ChatGPT,10,10,20,Conversation log\n2.0,ChatGPT,1e19,10,20,Conversation log\n"
                    "3.0,ChatGPT,10,10,20,Conversation log\n")
    res = runner.invoke(app, ["replay", str(path), "--skip-bad-rows", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_requests"] == 2
    assert "3 malformed row(s) skipped" in res.stderr and ":5:3:" in res.stderr


def test_a_latin1_agent_log_is_one_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes('{"job": "j\xe9", "type": "llm", "prompt_tokens": 10, "output_tokens": 10}\n'.encode("latin-1"))
    _one_line_exit_2(runner.invoke(app, ["replay", str(path)]), "not UTF-8 text")


def test_search_output_that_cannot_be_written(tmp_path):
    taken = tmp_path / "a-file"
    taken.write_text("x")
    _one_line_exit_2(runner.invoke(app, ["search", *SMALL, "--num-gpus", "1", "--out", str(taken / "s")]),
                     "cannot create the search's folder")


def test_workers_beyond_the_cores_are_capped_with_a_note(tmp_path):
    res = runner.invoke(app, ["search", "--model", "llama-3.1-8b", "--num-gpus", "1", *SMALL, "--workers", "4096",
                              "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "--workers 4096: this machine has" in res.stderr


def test_usage_errors_are_one_line_too(tmp_path):
    """Typer's own errors (an unknown option, a value of the wrong type) come through the same one-line path when
    fleetsim runs as a program."""
    for args, expected in ((["run", "--prize", "-1"], "No such option: --prize"),
                           (["run", "--num-requests", "abc"], "Invalid value for '--num-requests'")):
        p = subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, cwd=tmp_path)
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert p.returncode == 2 and len(lines) == 1 and expected in lines[0], p.stderr
        assert list(tmp_path.iterdir()) == []


def test_user_text_is_never_turned_into_emoji():
    res = runner.invoke(app, ["run", "--input-len", "uniform:A:B", "--arrival", "poisson", *SMALL])
    _one_line_exit_2(res, "uniform:A:B")


def test_a_run_folder_is_not_overwritten_unless_asked(tmp_path, monkeypatch):
    out = tmp_path / "o"
    first = runner.invoke(app, ["run", "--agents", "2", "--jobs", "2", "--turns", "2", "--out", str(out)])
    assert first.exit_code == 0 and (out / "jobs.parquet").exists()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = runner.invoke(app, ["run", *SMALL, "--out", str(out)])
    _one_line_exit_2(again, "holds an earlier run's files; pass --overwrite")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched
    replaced = runner.invoke(app, ["run", *SMALL, "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    # the request run's files, and none of the agent run's left beside them
    assert sorted(p.name for p in out.iterdir()) == ["kv_timeline.parquet", "plotly.min.js", "report.html",
                                                     "requests.parquet", "summary.json"]
    # `--out .` is the current folder: refused when it holds anything; `--out ""` is no folder at all
    monkeypatch.chdir(out)
    _one_line_exit_2(runner.invoke(app, ["run", *SMALL, "--out", "."]), "--out .: the folder holds")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    for command in (["run", *SMALL], ["replay", str(Path(__file__).parents[1] / "traces" / "azure_conv_2023.csv"),
                                      *SMALL], ["search", *SMALL, "--num-gpus", "1"]):
        _one_line_exit_2(runner.invoke(app, [*command, "--out", ""]), "--out: expected a folder path, got an empty")
    _one_line_exit_2(runner.invoke(app, ["trace", "inspect", str(Path(__file__).parents[1] / "traces" /
                                                                "azure_conv_2023.csv"), "--out", " "]),
                     "--out: expected a folder path, got an empty")
    assert list(empty.iterdir()) == []


WEKA = Path(__file__).parents[2] / "shared" / "data" / "traces" / "weka_claude_code" / "sessions"


@pytest.mark.skipif(not WEKA.exists(), reason="needs ../shared/data")
@pytest.mark.parametrize("field,value,expected", [
    ("t", "5", "field 't' must be a finite number of seconds"),
    ("t", float("nan"), "field 't' must be a finite number of seconds"),
    ("think_time", float("inf"), "field 'think_time' must be a finite number of seconds >= 0")])
def test_weka_sessions_with_bad_times_are_one_line(field, value, expected, tmp_path):
    doc = json.loads(sorted(WEKA.glob("*.json"))[0].read_text())
    doc["requests"][1][field] = value
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    _one_line_exit_2(runner.invoke(app, ["replay", str(path), "--model", "llama-3.1-70b", "--num-gpus", "8",
                                         "--tp", "8"]), expected)


def test_ray_missing_is_one_line_with_the_install_command_intact(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("Ray is installed here")
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(runner.invoke(app, ["search", "--executor", "ray", *SMALL, "--num-gpus", "1"]),
                     "pip install 'fleetsim[ray]'")  # the [ray] survives: messages are escaped
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stamp", ["NaN", "Infinity", "-Infinity"])
def test_trace_inspect_names_a_non_finite_timestamp(stamp, tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    path.write_text(f'{{"timestamp": {stamp}, "input_length": 10, "output_length": 5}}\n'
                    '{"timestamp": 1000, "input_length": 10, "output_length": 5}\n')
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(runner.invoke(app, ["trace", "inspect", str(path)]), ":1: field 'timestamp' must be a number, "
                                                                         "finite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]
    res = runner.invoke(app, ["trace", "inspect", str(path), "--skip-bad-rows", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["rows"] == 1, res.output  # skipped and counted


def test_a_search_whose_every_plan_is_infeasible_answers_so(tmp_path):
    # The issue's `search --num-gpus 8 --tp 3` (a ColumnNotFoundError then): every replica count of TP3 is refused
    # with its reason, the answer says no plan can serve, and the report is written.
    res = runner.invoke(app, ["search", "--num-gpus", "8", "--tp", "3", *SMALL, "--out", str(tmp_path / "s"),
                              "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "no_feasible_plan" and doc["winner"] is None
    assert (tmp_path / "s" / "report.html").exists()
