"""The command line as a user meets it: defaults, JSON, outputs, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from sim.cli import app

runner = CliRunner()
SMALL = ["--num-requests", "60"]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_run_json_has_the_documented_keys():
    res = invoke("run", "--json", *SMALL)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    for key in ("ttft_mean_s", "ttft_p50_s", "ttft_p99_s", "tpot_mean_s", "tpot_p99_s", "e2e_mean_s",
                "throughput_rps", "output_tokens_per_s", "goodput_rps", "num_requests"):
        assert key in summary
    assert summary["num_requests"] == 60


def test_run_table_and_outputs(tmp_path):
    out = tmp_path / "run1"
    res = invoke("run", "--model", "llama-3.1-70b", "--gpu", "h100", "--tp", "4", "--num-gpus", "8",
                 "--slo-ttft", "1", "--slo-tpot", "0.05", "--out", str(out), *SMALL)
    assert res.exit_code == 0, res.output
    assert "TTFT" in res.stdout and "goodput" in res.stdout and "llama-3.1-70b (bf16 weights, bf16 KV) on 8x h100-sxm, vllm-v1: 2 replica(s) of TP4" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["kv_timeline.parquet", "plotly.min.js", "report.html",
                                                     "requests.parquet", "summary.json"]
    df = pl.read_parquet(out / "requests.parquet")
    assert df.height == 60 and {"ttft_s", "tpot_s", "itl_p50_s", "itl_max_s", "e2e_s"} <= set(df.columns)
    doc = json.loads((out / "summary.json").read_text())
    assert doc["summary"]["slo_ttft_s"] == 1 and doc["scenario"]["tp"] == 4
    assert doc["scenario"]["engine"]["preset"] == "vllm-v1" and doc["run"]["engine"] == "vllm-v1"


def test_run_names_the_source_of_each_kernel():
    """The footer says which measurement or model costed each operator; an EP plan names its all-to-all."""
    res = invoke("run", "--model", "qwen3-30b-a3b", "--gpu", "h100", "--num-gpus", "8", "--tp", "1", "--attn-dp",
                 "8", "--ep", "8", *SMALL)
    assert res.exit_code == 0, res.output
    footer = " ".join(res.stdout.split("kernels costed by:")[1].split())
    assert "MoE experts: measured fused-MoE table (aiconfigurator h100_sxm" in footer
    assert "all-to-all: measured NCCL (aiconfigurator h100_sxm, NCCL 2.29.2)" in footer
    dense = invoke("run", "--model", "llama-3.1-8b", "--gpu", "h100", *SMALL)
    assert "all-to-all" not in dense.stdout and "MoE experts" not in dense.stdout


def test_scenario_file_with_flag_overrides(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('model = "llama-2-7b"\ngpu = "a100"\nnum_gpus = 2\n[engine]\nmax_num_seqs = 32\n'
                    '[workload]\ntrace = "azure-code"\nduration_s = 60\n[slo]\nttft_s = 0.5\n')
    res = invoke("run", str(path), "--json", "--seed", "3")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["slo_ttft_s"] == 0.5 and s["num_requests"] > 10


@pytest.mark.parametrize("args,message", [
    (["--model", "llama-9"], "unknown model 'llama-9'; valid names: bloom-176b, deepseek-v3"),
    (["--gpu", "h900"], "unknown GPU 'h900'; valid names: a10, a100-80gb-sxm"),
    (["--model", "llama-3.1-405b", "--gpu", "a100", "--num-gpus", "2", "--tp", "2"], "short by 306.0 GiB"),
    (["--rate", "-1"], "workload.rate: expected requests/s from 1e-6"),
    (["--num-gpus", "6", "--tp", "4"], "num_gpus (6) is not a multiple of tp x pp x attn_dp (4)"),
    (["--tp", "3", "--num-gpus", "3"], "tp=3 does not divide llama-3.1-8b's 32 attention heads"),
    (["--model", "llama-2-70b", "--pp", "3", "--num-gpus", "3"], "pp=3 does not divide llama-2-70b's 80 layers"),
    (["--gpu-memory-utilization", "1.5"], "engine.gpu_memory_utilization: expected a fraction"),
    (["--num-requests", "0"], "workload.num_requests: expected a positive integer"),
    (["--router", "random"], "router: unknown policy 'random'"),
    (["--format", "bogus", "--trace", "azure-conv"], "trace format 'bogus' is unknown"),
    (["--trace", "/no/such/file.csv"], "no such file"),
    (["--input-len", "weird:3", "--arrival", "poisson"], "unknown distribution 'weird:3'"),
    (["--tp", "2", "--decode-tp", "2"], "tp: disaggregated pools take their plans from [disagg] (prefill_* and"),
    (["--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "2", "--tp", "2", "--gpu-memory-utilization",
      "0.95", "--arrival", "poisson", "--input-len", "fixed:100000", "--num-requests", "2"],
     "the longest request needs 100,"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    out = tmp_path / "out"
    res = invoke("run", *args, "--out", str(out))
    assert res.exit_code == 2
    assert message in res.stderr
    assert "Traceback" not in res.output + res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists(), "no partial output on failure"


def test_malformed_trace_rows_name_file_line_and_field(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n"
                   "2023-11-16 18:15:47.00,abc,12\n")
    res = invoke("run", "--trace", str(csv))
    assert res.exit_code == 2
    assert f"{csv}:3:2: field 'ContextTokens' must be a non-negative integer, got 'abc'" in res.stderr
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'
                     '{"timestamp": 5, "input_length": "x", "output_length": 5}\n')
    res = invoke("run", "--trace", str(jsonl))
    assert res.exit_code == 2 and f"{jsonl}:2: field 'input_length'" in res.stderr
    jsonl.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5\n')
    res = invoke("run", "--trace", str(jsonl))
    assert res.exit_code == 2 and f"{jsonl}:1:56: invalid JSON (Expecting ',' delimiter)" in res.stderr
    neg = tmp_path / "neg.csv"
    neg.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,-5,44\n")
    res = invoke("run", "--trace", str(neg))
    assert res.exit_code == 2 and f"{neg}:2:2: field 'ContextTokens' must be a non-negative integer, got '-5'" in res.stderr


def test_bad_scenario_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("modle = 'x'\n")
    res = invoke("run", str(path))
    assert res.exit_code == 2 and "unknown field(s) modle" in res.stderr
    path.write_text("model = \n")
    res = invoke("run", str(path))
    assert res.exit_code == 2 and "invalid TOML" in res.stderr


def test_catalog_lists_and_shows_cards():
    res = invoke("catalog")
    assert res.exit_code == 0
    for name in ("llama-3.1-405b", "deepseek-v3", "mi300x", "b200", "hgx-8gpu", "ib-ndr-400"):
        assert name in res.stdout
    res = invoke("catalog", "show", "llama-3.1-8b")
    assert res.exit_code == 0
    assert "kv_bytes_per_token" in res.stdout and "131,072" in res.stdout and "huggingface.co" in res.stdout
    res = invoke("catalog", "show", "h100")
    assert res.exit_code == 0 and "989" in res.stdout
    res = invoke("catalog", "show", "nothing")
    assert res.exit_code == 2 and "valid names" in res.stderr


def test_console_entry_point_runs_the_default_scenario():
    """`fleetsim` with no arguments runs the shipped default (Llama-3.1-8B, 8 x H100, Azure conversation)."""
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "run" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "sim.cli"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "llama-3.1-8b (bf16 weights, bf16 KV) on 8x h100-sxm, vllm-v1: 8 replica(s) of TP1" in proc.stdout
    assert "2,867 / 0" in proc.stdout  # the first 10 minutes of the Azure conversation trace
