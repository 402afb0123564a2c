"""The search's results store is safe for content and for concurrency: edited inputs are simulated afresh, the
objective only re-ranks, a torn line is cut, one search writes at a time, and workers die with their parent."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from sim.planner import SearchSpace, search
from sim.planner.store import ResultStore
from sim.workload.traces import resolve

SMALL = dict(model="llama-3.1-8b", gpu="h100", num_gpus=2, workers=1,
             space=SearchSpace(max_num_seqs=(128,), max_num_batched_tokens=(2048,), attn_dp=(1,), pp=(1,)))


def _keys(store: Path) -> list[str]:
    return [json.loads(line)["key"] for line in store.read_text().splitlines()]


def test_an_edited_trace_is_simulated_afresh_not_served_from_the_store(tmp_path):
    trace = tmp_path / "mine.csv"
    shutil.copy(resolve("azure-code")[0], trace)
    kwargs = dict(**SMALL, out_dir=tmp_path / "s", **{"workload.trace": str(trace), "workload.num_requests": 150})
    first = search(**kwargs)
    assert first.simulated == 3 and first.reused == 0
    again = search(**kwargs)
    assert again.simulated == 0 and again.reused == 3
    # The same path, other content: the first 150 requests now have twice the output.
    df = pl.read_csv(trace)
    df.with_columns(pl.col("GeneratedTokens") * 2).write_csv(trace)
    edited = search(**kwargs)
    assert edited.simulated == 3 and edited.reused == 0
    before = first.table.sort("plan")["output_tokens_per_s"].to_list()
    after = edited.table.sort("plan")["output_tokens_per_s"].to_list()
    assert before != after


def test_an_edited_model_config_is_simulated_afresh(tmp_path):
    card = tmp_path / "model.toml"
    card.write_text((Path(__file__).parents[1] / "models" / "llama-3.1-8b.toml").read_text())
    kwargs = dict(**{**SMALL, "model": str(card)}, out_dir=tmp_path / "s",
                  **{"workload.num_requests": 60})
    assert search(**kwargs).simulated == 3
    assert search(**kwargs).simulated == 0
    card.write_text(card.read_text().replace("num_layers = 32", "num_layers = 40"))
    assert search(**kwargs).simulated == 3


def test_changing_only_the_objective_reuses_every_simulation(tmp_path):
    kwargs = dict(**SMALL, out_dir=tmp_path, **{"workload.num_requests": 60})
    first = search(objective="goodput", **kwargs)
    for objective in ("cost", "gpus", "throughput"):
        other = search(objective=objective, **kwargs)
        assert other.simulated == 0 and other.reused == first.simulated


def test_a_torn_last_line_is_cut_before_the_next_result_is_appended(tmp_path):
    kwargs = dict(**SMALL, out_dir=tmp_path, **{"workload.num_requests": 60})
    search(**{**kwargs, "space": SearchSpace(tp=(1,), pp=(1,), attn_dp=(1,), max_num_seqs=(128,),
                                              max_num_batched_tokens=(2048,))})
    store = tmp_path / "results.jsonl"
    whole = store.read_text()
    store.write_text(whole + '{"key": "abc", "row": {"ttft')  # a kill mid-write
    full = search(**kwargs)
    lines = store.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line parses: the torn one is gone
    assert len(lines) == len(set(_keys(store))) == full.reused + full.simulated == 3


def test_one_store_has_one_writer_and_the_second_search_reuses_the_first(tmp_path):
    script = ("import sys; from pathlib import Path; from sim.planner.store import ResultStore\n"
              "s = ResultStore(Path(sys.argv[1]), waiting=lambda: print('waiting', flush=True))\n"
              "print(sorted(s.rows), flush=True)\n")
    with ResultStore(tmp_path / "results.jsonl") as held:
        held.put("k", {"x": 1})
        child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "results.jsonl")],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.3)
        assert child.poll() is None  # blocked while this store is open
    assert child.communicate(timeout=60)[0].strip() == "['k']"  # then reads what the first wrote
    # two CLI searches started together on one store: no plan is simulated twice
    cmd = [sys.executable, "-m", "sim.cli", "search", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "2",
           "--num-requests", "200", "--attn-dp", "1", "--workers", "1", "--out", str(tmp_path / "s"), "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    keys = _keys(tmp_path / "s" / "results.jsonl")
    assert len(keys) == len(set(keys))
    docs = [json.loads(r[0]) for r in results]
    simulated = [sum(1 for row in d["plans"] if row["status"] == "ok" and not row["reused"]) for d in docs]
    assert sorted(simulated)[0] == 0 and sorted(simulated)[1] == len(keys)
    assert any("waiting for it to finish" in r[1] for r in results)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_search(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    cmd = [sys.executable, "-m", "sim.cli", "search", "--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "8",
           "--num-requests", "1500", "--workers", "2", "--out", str(tmp_path / "s"), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = tmp_path / "s" / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (store.exists() and store.read_text().count("\n") >= 1):
        time.sleep(0.05)
    workers = [c for c in _children(proc.pid) if _alive(c)]
    return proc, workers


def _gone(pids: list[int], within_s: float = 10.0) -> bool:
    deadline = time.time() + within_s
    while time.time() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_a_sigkilled_search_leaves_no_worker_running(tmp_path):
    if not Path("/proc").exists():
        import pytest

        pytest.skip("needs /proc to find the workers")
    proc, workers = _start_search(tmp_path)
    assert workers, "the search started no worker process"
    os.kill(proc.pid, signal.SIGKILL)  # the parent alone: no cleanup runs
    proc.wait()
    assert _gone(workers), [p for p in workers if _alive(p)]


def test_a_sigterm_ends_a_search_as_an_interrupt_keeping_its_results(tmp_path):
    if not Path("/proc").exists():
        import pytest

        pytest.skip("needs /proc to find the workers")
    proc, workers = _start_search(tmp_path)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert _gone(workers)
    assert len(_keys(tmp_path / "s" / "results.jsonl")) >= 1
