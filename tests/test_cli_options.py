"""One set of options for run, replay and search: declared once, grouped in help panels with their defaults, and
every one of them acting in search as in run."""

import json


import pytest
import typer
from typer.testing import CliRunner

from sim.cli import RUN_ONLY, app
from sim.cli_options import FIELDS, PANELS

runner = CliRunner()


def _options(name: str) -> dict:
    command = typer.main.get_command(app).commands[name]
    return {p.name: p for p in command.params}


def test_search_and_replay_take_every_option_of_run_but_the_plan_it_varies():
    run, search, replay = _options("run"), _options("search"), _options("replay")
    shared = set(run) - RUN_ONLY
    assert shared <= set(search), sorted(shared - set(search))
    assert set(run) - {"scenario_file", "trace", "agent_trace", "show_jobs"} <= set(replay)
    for name in ("input_len", "output_len", "cv", "format", "model_filter", "start", "rate_scale", "sample",
                 "max_tokens", "gpu_memory_utilization", "scheduling", "router", "fabric", "agent_rate",
                 "first_prompt", "new_tokens", "call_output_len"):
        assert name in search, name
    for name in shared:  # declared once: the same help text in both commands
        assert run[name].help == search[name].help, name


def test_help_groups_options_in_panels_and_shows_the_scenarios_defaults():
    res = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    headings = [line[:-1] for line in res.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert [h for h in headings if h in PANELS] == [p for p in PANELS if p in headings]  # in the panels' order
    assert set(PANELS) <= set(headings), headings
    # Each option sits under its own panel's heading.
    section = {}
    heading = None
    for line in res.stdout.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            heading = line[:-1]
        elif line.startswith("  --"):
            section[line.split()[0]] = heading
    assert section["--model"] == "Model & hardware" and section["--slo-ttft"] == "SLOs"
    assert section["--policy"] == "Engine" and section["--max-batched-tokens"] == "Search space", section
    run = _options("run")
    assert "(default: llama-3.1-8b)" in run["model"].help
    assert "(default: 8192)" in run["max_batched_tokens"].help
    assert "(default: 2)" in run["slo_ttft"].help
    assert all(getattr(p, "rich_help_panel", None) for n, p in run.items() if n in FIELDS)


@pytest.mark.parametrize("args", [["--agent-rate", "0.5"], ["--agents", "3"]])
def test_agent_shape_flags_act_and_open_loop_agents_run_from_the_cli(args, tmp_path):
    res = runner.invoke(app, ["run", *args, "--jobs", "4", "--turns", "3", "--first-prompt", "fixed:1000",
                              "--new-tokens", "fixed:100", "--call-output-len", "fixed:50", "--tool-time", "fixed:0.5",
                              "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["num_jobs"] == 4 and s["num_requests"] == 12
    import polars as pl

    calls = pl.read_parquet(tmp_path / "o" / "requests.parquet")
    # 3 calls a job: 1000 tokens, then + 50 output + 100 new each: 1000, 1150, 1300 prompt tokens, 50 out each
    assert sorted(calls["input_tokens"].to_list()) == sorted([1000, 1150, 1300] * 4)
    assert set(calls["output_tokens"]) == {50}


def test_open_loop_agents_from_toml_and_python(tmp_path):
    import sim
    from sim.agents.spec import AgentSpec

    path = tmp_path / "a.toml"
    path.write_text("[agents]\nrate = 0.5\nprograms = 6\nturns = 2\n")
    res = runner.invoke(app, ["run", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_jobs"] == 6
    r = sim.run(sim.Scenario(agents=AgentSpec(rate=0.5, programs=6, turns=2)))
    starts = r.jobs["start_s"].to_list()
    assert r.summary["num_jobs"] == 6 and max(starts) > 0  # arrivals spread out: open loop
    closed = sim.run(sim.Scenario(agents=AgentSpec(programs=6, turns=2)))  # default: 8 agents, closed loop
    assert closed.jobs["start_s"].max() == 0.0
    with pytest.raises(sim.FleetsimError, match="not both"):
        AgentSpec(agents=2, rate=0.5)


def test_search_takes_generated_lengths_and_they_act(tmp_path):
    res = runner.invoke(app, ["search", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "1",
                              "--arrival", "poisson", "--rate", "2", "--num-requests", "60", "--input-len", "fixed:512",
                              "--output-len", "fixed:64", "--max-num-seqs", "128", "--max-batched-tokens", "2048",
                              "--workers", "1", "--out", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    plans = [p for p in json.loads(res.stdout)["plans"] if p["status"] == "ok"]
    assert plans
    for p in plans:  # 60 requests of 64 output tokens, offered at exactly 2 req/s
        assert p["offered_rps"] == pytest.approx(2.0)
        assert p["output_tokens_per_s"] * (p["e2e_p50_s"] or 1) > 0
    winner = json.loads(res.stdout)["winner"]
    import sim
    from sim.planner.runner import candidate_from_row, scenario_for

    sc = scenario_for(sim.Scenario(), candidate_from_row(winner), winner["num_gpus"]).with_overrides(
        model="llama-3.1-8b", gpu="h100", **{"workload.arrival": "poisson", "workload.rate": 2.0,
                                             "workload.num_requests": 60, "workload.duration_s": float("inf"),
                                             "workload.input_len": "fixed:512", "workload.output_len": "fixed:64"})
    r = sim.run(sc)
    assert set(r.requests["input_tokens"]) == {512} and set(r.requests["output_tokens"]) == {64}
    assert r.summary["ttft_p90_s"] == pytest.approx(winner["ttft_p90_s"])


def test_search_runs_open_loop_agents_from_the_cli(tmp_path):
    res = runner.invoke(app, ["search", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "1",
                              "--agent-rate", "0.5", "--jobs", "6", "--turns", "2", "--max-num-seqs", "128",
                              "--max-batched-tokens", "2048", "--workers", "1", "--out", str(tmp_path / "s"),
                              "--json"])
    assert res.exit_code == 0, res.output
    plans = [p for p in json.loads(res.stdout)["plans"] if p["status"] == "ok"]
    assert plans and all(p["jct_mean_s"] > 0 for p in plans)


def test_every_option_shows_its_default():
    """Each option's help says its default (a value, or what happens when it is left off), or click shows one."""
    cmd = typer.main.get_command(app)
    commands = [cmd.commands[n] for n in ("run", "search", "replay")]
    commands += list(cmd.commands["trace"].commands.values()) + list(cmd.commands["catalog"].commands.values())
    for command in commands:
        for p in command.params:
            if p.param_type_name != "option" or p.hidden or p.is_flag:
                continue
            shown = p.show_default and p.default is not None and p.default is not False
            assert shown or "default" in (p.help or "").lower(), (command.name, p.name)
