"""Agent jobs: LLM calls between tool calls, context reuse across calls, parallel tool fan-out."""

import dataclasses
from collections import Counter

import polars as pl
import pytest

import sim
from sim.agents import AgentProgram, AgentSpec, Fork, LLMCall, ToolCall
from sim.runner import build, collect, execute


def _run_programs(programs, **overrides):
    scenario = sim.Scenario(model="llama-3.1-8b", gpu="h100", num_gpus=1,
                            agents=AgentSpec(programs=len(programs), agents=len(programs))).with_overrides(**overrides)
    simulation = build(scenario, programs)
    execute(simulation)
    return collect(scenario, simulation, 0.0)


def test_parallel_tool_calls_join_on_the_slowest_and_beat_the_same_calls_in_sequence():
    calls = (LLMCall(2000, 50),)
    parallel = AgentProgram(0, calls + (ToolCall((1.0, 2.0, 3.0)),) + (LLMCall(300, 50),))
    sequential = AgentProgram(0, calls + (ToolCall((1.0,)), ToolCall((2.0,)), ToolCall((3.0,))) + (LLMCall(300, 50),))
    jp = _run_programs([parallel]).jobs.row(0, named=True)
    js = _run_programs([sequential]).jobs.row(0, named=True)
    assert jp["tool_s"] == pytest.approx(3.0) and js["tool_s"] == pytest.approx(6.0)
    assert js["jct_s"] - jp["jct_s"] == pytest.approx(3.0, abs=1e-9)  # same LLM work, the join waited for 3 s


def test_each_call_extends_the_jobs_context_and_reuses_its_cached_prefix():
    prog = AgentProgram(0, (LLMCall(3000, 100), ToolCall((0.5,)), LLMCall(400, 100), ToolCall((0.5,)),
                            LLMCall(400, 100)))
    r = _run_programs([prog])
    reqs = r.requests.sort("turn")
    assert reqs["input_tokens"].to_list() == [3000, 3500, 4000]  # context so far + the new tokens
    # The second call finds the first call's prompt and output in the prefix cache, in 256-token units.
    assert reqs["prefix_hit_tokens"].to_list() == [0, 3072, 3584]
    assert r.jobs["reprefill_tokens"][0] == (3100 - 3072) + (3600 - 3584)
    cold = _run_programs([prog], **{"engine.enable_prefix_caching": False})
    assert cold.requests["prefix_hit_tokens"].sum() == 0
    assert cold.jobs["reprefill_tokens"][0] == 3100 + 3600
    assert cold.jobs["jct_s"][0] > r.jobs["jct_s"][0]


def test_generated_agent_workload_finishes_every_call_once_and_is_seeded():
    spec = AgentSpec(programs=30, agents=6, turns=6, parallel_tools=2)
    scenario = sim.Scenario(model="llama-3.1-8b", gpu="h100", num_gpus=2, router="prefix-aware", agents=spec)
    simulation = build(scenario)
    seen = Counter()
    simulation.fleet.on_finish(lambda req: seen.update([req.rid]))
    execute(simulation)
    assert len(simulation.requests) == 30 * 6 and set(seen.values()) == {1}
    assert sorted(j["program"] for j in simulation.agents.jobs) == list(range(30))
    for rep in [lane for r in simulation.fleet.replicas for lane in r.lanes]:
        assert rep.kv.used == 0
    a, b = sim.run(scenario), sim.run(scenario)
    assert a.jobs.equals(b.jobs) and a.requests.drop("replica").equals(b.requests.drop("replica"))
    other = sim.run(scenario.with_overrides(seed=1))
    assert not a.jobs.equals(other.jobs)


def test_prefix_aware_routing_keeps_a_jobs_calls_where_its_context_is_cached():
    spec = AgentSpec(programs=40, agents=8, turns=6)
    hit = {}
    for router in ("round-robin", "prefix-aware"):
        s = sim.run(model="llama-3.1-8b", gpu="h100", num_gpus=4, router=router, agents=spec).summary
        hit[router] = s["prefix_hit_rate"]
    assert hit["prefix-aware"] > hit["round-robin"] + 0.3


def test_agent_cli_and_bad_input(tmp_path):
    from typer.testing import CliRunner

    from sim.cli import app

    res = CliRunner().invoke(app, ["run", "--agents", "4", "--jobs", "8", "--turns", "3", "--kv-policy", "pin:10",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "job completion (s)" in res.stdout and "KV pins" in res.stdout and (tmp_path / "jobs.parquet").exists()
    res = CliRunner().invoke(app, ["run", "--agents", "4", "--tool-time", "lognormal:x"])
    assert res.exit_code == 2 and "agents.tool_time" in res.stderr
    res = CliRunner().invoke(app, ["run", "--agents", "4", "--agent-rate", "1"])
    assert res.exit_code == 2 and "or rate (open loop), not both" in res.stderr


def _retention(policy, blocks):
    spec = AgentSpec(programs=48, agents=16, turns=10, first_prompt="lognormal:8000:0.3",
                     new_tokens="lognormal:1500:0.5", tool_time="lognormal:20:0.5", kv_policy=policy)
    return sim.run(model="llama-3.1-70b", gpu="h100", num_gpus=8, tp=8, agents=spec,
                   **{"engine.num_gpu_blocks_override": blocks}).summary


def test_pinning_helps_with_room_to_spare_and_hurts_under_memory_pressure():
    # 16 jobs whose contexts grow to ~23k tokens each, 20 s tool pauses, Llama-3.1-70B on TP8.
    roomy = {p: _retention(p, 24_000) for p in ("evict", "pin:300")}
    tight = {p: _retention(p, 8_000) for p in ("evict", "pin:300", "continuum")}
    print("\nKV blocks  policy     mean JCT  p99 JCT  re-prefilled  preemptions")
    for blocks, runs in ((24_000, roomy), (8_000, tight)):
        for p, s in runs.items():
            print(f"{blocks:>9}  {p:9}  {s['jct_mean_s']:7.1f}  {s['jct_p99_s']:7.1f}  {s['reprefill_tokens']:12,}"
                  f"  {s['preemptions']:11}")
    # Room to spare: the LRU cache evicts paused jobs' context under churn; pinning keeps it and saves re-prefills.
    assert roomy["pin:300"]["reprefill_tokens"] < 0.5 * roomy["evict"]["reprefill_tokens"]
    assert roomy["pin:300"]["jct_mean_s"] < roomy["evict"]["jct_mean_s"]
    assert roomy["pin:300"]["preemptions"] == roomy["evict"]["preemptions"] == 0
    # Pressure: pinned context crowds out running calls: preemptions and a much worse tail.
    assert tight["pin:300"]["preemptions"] > 2 * tight["evict"]["preemptions"]
    assert tight["pin:300"]["jct_p99_s"] > 3 * tight["evict"]["jct_p99_s"]
    # The Continuum-style policy stops pinning when the cache fills, so it does not fall into that hole.
    assert tight["continuum"]["jct_p99_s"] < 1.2 * tight["evict"]["jct_p99_s"]


def test_retention_policy_names_are_checked():
    with pytest.raises(sim.FleetsimError, match="pin needs a TTL in seconds"):
        AgentSpec(kv_policy="pin")
    with pytest.raises(sim.FleetsimError, match="expected one of evict, pin:SECONDS, continuum, offload, none"):
        AgentSpec(kv_policy="keep")


def test_replaying_all_25_weka_sessions_reports_each_sessions_jct(shared_data, tmp_path):
    from typer.testing import CliRunner

    from sim.agents.traces import read_agent_trace
    from sim.cli import app

    folder = shared_data / "traces/weka_claude_code/sessions"
    programs, names, _ = read_agent_trace(folder)
    assert len(programs) == 25 and sum(p.llm_calls for p in programs) == 1096
    spec = AgentSpec(trace=str(folder), agents=None)
    result = sim.run(model="llama-3.1-70b", gpu="h100", num_gpus=8, tp=8, router="prefix-aware", agents=spec)
    jobs = result.jobs
    assert jobs.height == 25 and set(jobs["session"]) == set(names)
    assert not jobs["failed"].any() and (jobs["jct_s"] >= jobs["tool_s"]).all()
    assert jobs["turns"].sum() == 1096 == result.summary["num_finished"]
    assert result.summary["requests_clipped"] > 0  # some sessions outgrow Llama-3.1's 131k context
    assert result.summary["prefix_hit_rate"] > 0.5  # each call reuses the session's cached context
    res = CliRunner().invoke(app, ["replay", str(folder / "trace_0022.json"), "--model", "llama-3.1-8b",
                                   "--num-gpus", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "trace_0022" in res.stdout and "JCT s" in res.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"requests": [{"in": 10, "out": -3}]}')
    res = CliRunner().invoke(app, ["replay", str(bad)])
    assert res.exit_code == 2 and "requests[0]: field 'out' must be a positive integer" in res.stderr


def _queued(scheduling, fast_forward=True, policy="evict"):
    spec = AgentSpec(programs=96, agents=32, turns=8, tool_time="lognormal:2:1.0", kv_policy=policy)
    return sim.run(model="llama-3.1-8b", gpu="h100", num_gpus=1, agents=spec,
                   **{"engine.scheduling": scheduling, "engine.max_num_seqs": 8,
                      "engine.max_num_batched_tokens": 2048, "engine.fast_forward": fast_forward})


def test_program_level_fcfs_lets_started_jobs_finish_sooner():
    fcfs, program = _queued("fcfs").summary, _queued("program").summary
    print(f"\nmean JCT: request FCFS {fcfs['jct_mean_s']:.1f} s, program FCFS {program['jct_mean_s']:.1f} s")
    assert program["jct_mean_s"] < 0.98 * fcfs["jct_mean_s"]


@pytest.mark.parametrize("scheduling,policy", [("program", "evict"), ("fcfs", "pin:5"), ("program", "continuum"),
                                               ("fcfs", "offload")])
def test_agent_runs_fast_forward_exactly(scheduling, policy):
    a, b = _queued(scheduling, True, policy), _queued(scheduling, False, policy)
    import numpy as np

    np.testing.assert_allclose(a.jobs["jct_s"].to_numpy(), b.jobs["jct_s"].to_numpy(), rtol=1e-9)
    assert a.requests["prefix_hit_tokens"].to_list() == b.requests["prefix_hit_tokens"].to_list()


def test_agent_trace_readers_on_real_files_and_our_jsonl(shared_data, tmp_path):
    import json as _json

    from sim.agents.traces import read_agent_trace

    trt = shared_data / "traces/trtllm_scaffolding"
    progs, names, _ = read_agent_trace(trt)
    assert sorted(names) == ["django__django-16801.trace", "matplotlib__matplotlib-23412.trace"]
    for prog, name in zip(progs, names):
        events = _json.loads((trt / f"{name}.json").read_text())["events"]
        calls = [e for e in events if e.get("role") == "assistant"]
        assert prog.llm_calls == len(calls)
        assert [s.prompt_tokens for s in prog.steps if isinstance(s, LLMCall)] == [c["prompt_tokens"] for c in calls]
        tools_between = sum(e["duration_ms"] for e in events[events.index(calls[0]):]
                            if e["event_type"] == "tool_call" and events.index(e) < events.index(calls[-1]))
        assert sum(s.duration for s in prog.steps if isinstance(s, ToolCall)) == pytest.approx(tools_between / 1000)
    progs, names, clipped = read_agent_trace(shared_data / "traces/weka_claude_code/requests_nohash.csv.gz", 131072)
    assert len(progs) == 710 and sum(p.llm_calls for p in progs) == 49334 and clipped > 0
    log = tmp_path / "jobs.jsonl"
    log.write_text('{"job": "a", "type": "llm", "prompt_tokens": 3000, "output_tokens": 100}\n'
                   '{"job": "a", "type": "tool", "durations_s": [1.0, 2.5]}\n'
                   '{"job": "b", "type": "llm", "prompt_tokens": 800, "output_tokens": 50}\n'
                   '{"job": "a", "type": "llm", "prompt_tokens": 3400, "output_tokens": 80}\n')
    progs, names, _ = read_agent_trace(log)
    assert names == ["a", "b"] and [p.llm_calls for p in progs] == [2, 1]
    assert progs[0].steps[1] == ToolCall((1.0, 2.5))
    result = sim.run(model="llama-3.1-8b", gpu="h100", num_gpus=1, agents=AgentSpec(trace=str(log), agents=None))
    jobs = result.jobs
    assert jobs["session"].to_list() == ["a", "b"] and jobs["tool_s"][0] == pytest.approx(2.5)
    # the second call of job a reuses its first call's context (3000 prompt + 100 output -> 12 full units)
    assert result.requests.filter(result.requests["turn"] == 1)["prefix_hit_tokens"][0] == 12 * 256
    log.write_text('{"job": "a", "type": "llm", "prompt_tokens": 3000}\n')
    with pytest.raises(sim.FleetsimError, match=r"jobs.jsonl:1: field 'output_tokens' must be a positive integer"):
        read_agent_trace(log)
    log.write_text('{"job": "a", "type": "sleep"}\n')
    with pytest.raises(sim.FleetsimError, match=r"jobs.jsonl:1: field 'type' must be 'llm' or 'tool'"):
        read_agent_trace(log)


def _pressured(**agents):
    spec = AgentSpec(programs=48, agents=16, turns=10, first_prompt="lognormal:8000:0.3",
                     new_tokens="lognormal:1500:0.5", tool_time="lognormal:20:0.5", **agents)
    return sim.Scenario(model="llama-3.1-70b", gpu="h100", num_gpus=8, tp=8, agents=spec,
                        engine=sim.EngineConfig(num_gpu_blocks_override=8000))


def test_search_sweeps_kv_policies_and_finds_the_most_agents_within_a_jct_slo():
    from sim.planner import SearchSpace, search

    space = SearchSpace(tp=(8,), pp=(1,), attn_dp=(1,), max_num_seqs=(256,), max_num_batched_tokens=(2048,))
    swept = search(_pressured(), space=dataclasses.replace(space, kv_policies=("evict", "pin:300", "continuum")),
                   objective="jct", workers=2)
    order = swept.table["plan"].to_list()
    assert order[-1] == "1x(TP8) kv=pin:300"  # pinning everything under memory pressure is the worst by far
    assert set(swept.table["kv_policy"]) == {"evict", "pin:300", "continuum"}
    cap = search(_pressured().with_overrides(**{"slo.jct_s": 400.0}), space=space, capacity=True, workers=1)
    n = int(cap.winner["capacity_agents"])
    assert 1 <= n < 48

    from sim.planner.runner import candidate_from_row, scenario_for

    winner = scenario_for(_pressured(), candidate_from_row(cap.winner), cap.winner["num_gpus"])  # its knobs too

    def p90(agents):
        return sim.run(dataclasses.replace(winner, agents=dataclasses.replace(winner.agents, agents=agents))
                       ).summary["jct_p90_s"]

    assert p90(n) <= 400.0 < p90(n + 1)
    with pytest.raises(sim.FleetsimError, match="needs a JCT target"):
        search(_pressured(), space=space, capacity=True, workers=1)


def _swe_bench_like(policy, scheduling="program"):
    # SWE-bench-like: 500 jobs of 20 calls; a 6k-token task prompt, ~1.5k tokens of tool output per turn (contexts
    # reach ~30-40k tokens), ~250 output tokens, lognormal tool times with a 1 s median and a long tail. 40 agents
    # at a time keep Llama-3.1-70B on 8 x H100 (TP8) short of KV memory.
    spec = AgentSpec(programs=500, agents=40, turns=20, first_prompt="lognormal:6000:0.4",
                     new_tokens="lognormal:1500:0.8", output_tokens="lognormal:250:0.7",
                     tool_time="lognormal:1.0:1.5", kv_policy=policy)
    return sim.run(model="llama-3.1-70b", gpu="h100", num_gpus=8, tp=8, agents=spec,
                   engine={"scheduling": scheduling}).summary


def test_swe_bench_like_workload_continuum_beats_evict_and_a_fixed_ttl():
    runs = {p: _swe_bench_like(p) for p in ("evict", "pin:10", "continuum")}
    print("\npolicy (program FCFS)  mean JCT  p99 JCT  preemptions  re-prefilled  pins")
    for p, s in runs.items():
        print(f"{p:21}  {s['jct_mean_s']:8.1f}  {s['jct_p99_s']:7.1f}  {s['preemptions']:11}  "
              f"{s['reprefill_tokens']:12,}  {s['kv_pins']:4}")
    for s in runs.values():
        assert s["num_finished"] == 500 * 20 and s["num_jobs_failed"] == 0
    assert runs["continuum"]["jct_mean_s"] < 0.95 * runs["evict"]["jct_mean_s"]
    assert runs["continuum"]["jct_mean_s"] < 0.98 * runs["pin:10"]["jct_mean_s"]
    # Fewer re-prefilled tokens is where the time comes from. (How many preemptions each policy causes is not
    # ordered: with vLLM V1's zero admission watermark a pin can hold blocks a running request then lacks, and
    # what a preemption costs, the recomputed tokens, is what this asserts.)
    assert runs["continuum"]["reprefill_tokens"] < runs["pin:10"]["reprefill_tokens"] < runs["evict"]["reprefill_tokens"]


def test_offloaded_context_is_reloaded_over_pcie_instead_of_recomputed():
    # Job A's 8k-token context is evicted from a small GPU cache by job B while A waits 5 s on a tool.
    a = AgentProgram(0, (LLMCall(8000, 16), ToolCall((5.0,)), LLMCall(200, 16)))
    b = AgentProgram(1, (ToolCall((1.0,)), LLMCall(9000, 16)))
    runs = {p: _run_programs([a, b], **{"agents.kv_policy": p, "engine.num_gpu_blocks_override": 700})
            for p in ("evict", "offload")}
    second = {p: r.requests.filter((r.requests["program"] == 0) & (r.requests["turn"] == 1)).row(0, named=True)
              for p, r in runs.items()}
    job_a = {p: r.jobs.row(0, named=True) for p, r in runs.items()}
    # A's first call leaves 31 full 256-token units (8,016 tokens). B's prompt needs 564 of the 700 blocks: LRU
    # eviction takes A's last 23 units and leaves its first 8 on the GPU.
    assert job_a["evict"]["reprefill_tokens"] == 8016 - 8 * 256
    assert job_a["offload"]["reprefill_tokens"] == 8016 - 31 * 256  # only the partial last unit
    from sim.serving.host_cache import PCIE_EFFICIENCY

    mem = runs["offload"].memory
    unit_bytes = 256 * mem.kv_bytes_per_token  # on the one GPU
    reload_s = 23 * unit_bytes / (64e9 * PCIE_EFFICIENCY)  # H100: PCIe Gen5 x16, 64 GB/s per direction
    assert runs["offload"].summary["kv_reloaded_gb"] == pytest.approx(23 * unit_bytes / 1e9)
    assert runs["offload"].summary["kv_offloaded_gb"] == pytest.approx(31 * unit_bytes / 1e9)
    ttft = {p: s["ttft_s"] for p, s in second.items()}
    assert ttft["offload"] > reload_s and ttft["offload"] < 0.5 * ttft["evict"]
    # Everything else is the same work: both jobs finish every call once.
    for r in runs.values():
        assert r.summary["num_finished"] == 3 and not r.jobs["failed"].any()


def _flatten(steps):
    """The same calls with every fork's branches run one after another."""
    out = []
    for s in steps:
        if isinstance(s, Fork):
            for branch in s.branches:
                out.extend(_flatten(branch))
        else:
            out.append(s)
    return tuple(out)


def test_sub_agents_run_alongside_each_other_while_the_main_agent_waits(shared_data, tmp_path):
    import csv
    import gzip

    from sim.agents.traces import read_agent_trace

    src = shared_data / "traces/weka_claude_code/requests_nohash.csv.gz"
    with gzip.open(src, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [row for row in reader if row["trace_id"] == "trace_0282"]
    sample = tmp_path / "session.csv"
    with open(sample, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (prog,), _, _ = read_agent_trace(sample, 131072)
    forks = [s for s in prog.steps if isinstance(s, Fork)]
    agents = Counter(row["agent"] for row in rows)
    assert sum(len(f.branches) for f in forks) == len(agents) - 1  # every sub-agent, once
    assert prog.llm_calls == len(rows)
    widest = max(forks, key=lambda f: len(f.branches))
    assert len(widest.branches) >= 2
    overlapped = _run_programs([prog], model="llama-3.1-70b", tp=8, num_gpus=8)
    sequential = _run_programs([AgentProgram(0, _flatten(prog.steps))], model="llama-3.1-70b", tp=8, num_gpus=8)
    for r in (overlapped, sequential):
        assert r.summary["num_finished"] == len(rows)
    assert overlapped.jobs["jct_s"][0] < sequential.jobs["jct_s"][0]
    spans = sorted(zip(overlapped.requests["arrival_s"], overlapped.requests["finish_s"]))
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # some calls were in flight together
    spans = sorted(zip(sequential.requests["arrival_s"], sequential.requests["finish_s"]))
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))


def test_policies_act_on_the_engine_only_through_its_methods():
    """The agent driver and the routers reach replicas and fleets only through their policy methods (the rules a
    policy must obey are in those methods, not in prose): no attribute outside them is read or written."""
    import ast
    from pathlib import Path

    import sim.agents.driver
    import sim.serving.router

    replica_api = {"enqueue", "cached_prefix", "pin", "unpin", "engine_load", "prefill_seconds", "offload", "reload"}
    fleet_api = {"submit", "submit_to", "route", "replica", "prefer_cache"}
    for module in (sim.agents.driver, sim.serving.router):
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("replica", "rep"):
                assert node.attr in replica_api, f"{module.__name__}: replica.{node.attr}"
            if isinstance(owner, ast.Attribute) and owner.attr == "fleet":
                assert node.attr in fleet_api, f"{module.__name__}: fleet.{node.attr}"


def test_subagents_fan_out_as_chains_of_their_own_the_job_waits_for():
    """--subagents N: after its first call each job spawns N sub-agents of subagent_turns calls each, with contexts
    of their own, and resumes when the last one finishes."""
    base = {"agents": 2, "programs": 4, "turns": 3, "tool_time": "fixed:1"}
    plain = sim.run(agents=base)
    fanned = sim.run(agents={**base, "subagents": 2, "subagent_turns": 2})
    assert plain.requests.height == 4 * 3 and fanned.requests.height == 4 * (3 + 2 * 2)
    assert fanned.summary["jct_mean_s"] > plain.summary["jct_mean_s"]  # the job waits for its sub-agents
    def overlapping(result) -> bool:  # some two calls of job 0 in flight at once
        calls = result.requests.filter(pl.col("program") == 0).sort("arrival_s")
        starts, ends = calls["arrival_s"].to_list(), calls["finish_s"].to_list()
        return any(b < e for b, e in zip(starts[1:], ends[:-1]))

    assert overlapping(fanned) and not overlapping(plain)  # the sub-agents run side by side; a chain never does
