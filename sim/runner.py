"""Build a simulation from a scenario, run it, and collect its results."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import simpy

from sim.agents.driver import AgentDriver
from sim.agents.program import AgentProgram, longest_call
from sim.agents.generate import generate_programs
from sim.agents.traces import read_agent_trace
from sim.cost.iteration import IterationCost
from sim.core.budget import BYTES_PER_ENGINE, BYTES_PER_REQUEST, check_gpus, check_memory
from sim.energy.account import PoolEnergy, energy_summary
from sim.energy.power import PowerModel
from sim.errors import FleetsimError
from sim.workload.offered import count_at_rate
from sim.model.precision import compute_dtype, describe_precision
from sim.hardware.catalog import load_fabric, load_gpu, load_node
from sim.hardware.cluster import Cluster
from sim.metrics.export import write_folder
from sim.metrics.itl import Weighted
from sim.metrics.records import request_table
from sim.metrics.summary import job_summary, summarize
from sim.moe.balance import Balancer, Profile, parse_policy
from sim.moe.routing import parse as parse_routing
from sim.parallel.feasibility import EngineLimits, fit_pool
from sim.parallel.memory import MemoryBudget
from sim.parallel.plan import Plan
from sim.scenario import Scenario
from sim.serving.disagg import DisaggFleet
from sim.serving.fleet import Fleet, closed_loop
from sim.serving.replica import Replica
from sim.serving.request import Request
from sim.serving.router import make_router
from sim.workload.build import Prepared, prepare

Progress = Callable[[int, int], None]  # (finished, total)


@dataclass
class Result:
    """What one run produced: the per-request table, the summary, the KV timeline and how the run went."""

    scenario: Scenario
    requests: pl.DataFrame
    summary: dict[str, Any]
    kv_timeline: pl.DataFrame
    memory: MemoryBudget
    info: dict[str, Any] = field(default_factory=dict)
    jobs: pl.DataFrame | None = None  # agent workloads: one row per job (JCT, turns, re-prefilled tokens)
    trace: pl.DataFrame | None = None  # the request table simulated (row i = request i), measured latencies included
    itl: Weighted | None = None  # every inter-token latency of the run, pooled (for percentiles beyond the summary's)

    def write(self, out_dir: str | Path, tables: dict[str, pl.DataFrame] | None = None,
              pages: dict[str, str] | None = None, overwrite: bool = False) -> list[Path]:
        """The run's tables and summary, plus any extra `tables` and HTML `pages`, written all or nothing, into a
        new or empty folder (or, with `overwrite`, replacing an earlier run's outputs there)."""
        doc = {"summary": self.summary, "run": self.info, "scenario": asdict(self.scenario),
               "memory_per_gpu": {"weights_gib": self.memory.weight_bytes / 2**30,
                                  "activations_and_non_torch_gib": self.memory.activation_bytes / 2**30,
                                  "kv_cache_gib": self.memory.kv_bytes / 2**30,
                                  "kv_blocks": self.memory.num_blocks}}
        tables = {"requests": self.requests, "kv_timeline": self.kv_timeline, **(tables or {})}
        if self.jobs is not None:
            tables["jobs"] = self.jobs
        from sim.report.run_report import report_html
        from sim.report.search_report import PLOTLY_BUNDLE, plotly_bundle

        title = f"{self.info.get('model', '')} on {self.info.get('num_gpus', '')}x {self.info.get('gpu', '')}"
        pages = {"report": report_html(title, self.summary, self.requests, self.kv_timeline, self.itl, self.jobs),
                 **(pages or {})}
        return write_folder(out_dir, tables, {"summary": doc}, pages, {PLOTLY_BUNDLE: plotly_bundle()},
                            overwrite=overwrite)


@dataclass
class Simulation:
    """The assembled simulation, before or after running (tests reach into it for invariants)."""

    env: simpy.Environment
    fleet: Fleet | DisaggFleet
    requests: list[Request]
    memory: MemoryBudget
    max_model_len: int
    model_name: str = ""
    gpu_name: str = ""
    agents: AgentDriver | None = None  # agent jobs instead of a request table
    programs: list[AgentProgram] = field(default_factory=list)
    workload: Prepared | None = None  # the request table simulated (request i is its row i), with its load notes
    pools: list[_Pool] = field(default_factory=list)  # colocated: one; disaggregated: prefill, decode
    concurrency: int | None = None  # closed loop: requests in flight at most (workload.concurrency)


# Plan fields that a disaggregated scenario sets per pool ([disagg] prefill_* and decode_*) instead.
_POOL_FIELDS = {"tp": 1, "pp": 1, "attn_dp": 1, "ep": 1, "tp_nodes": 0, "replicas": None, "moe_policy": "ep"}


def check_moe_options(scenario: Scenario, model, routing: bool = True) -> None:  # noqa: ANN001
    """Routing and balancing apply to MoE models only, and (`routing`) the routing spec must parse. A search checks
    both once, so that a bad spec is not an error in every plan; a run's pools parse the routing themselves."""
    if model.moe is None:
        if scenario.moe_routing != "uniform" or scenario.moe_policy != "ep":
            raise FleetsimError(f"moe_routing / moe_policy: {model.name} has no experts")
        return
    if routing:
        parse_routing(scenario.moe_routing, model.num_moe_layers, model.moe.num_experts, model.moe.top_k)


def build(scenario: Scenario, programs: Sequence[AgentProgram] | None = None) -> Simulation:
    """Assemble a scenario's simulation. `programs`: agent jobs to run instead of the scenario's own (the scenario's
    [agents] section still sets the loop, KV policy and unit size; the plan must hold these jobs' longest call)."""
    programs_override = programs
    model = scenario.load_model()
    eng = scenario.engine
    node, fabric = load_node(scenario.node), load_fabric(scenario.fabric)
    check_moe_options(scenario, model, routing=False)
    env = simpy.Environment()
    dis = scenario.disagg
    router = scenario.router
    if router == "auto":
        router = "prefix-aware" if scenario.agents is not None else "round-robin"
    make_router(router)  # an unknown name fails before anything is built
    # The workload comes first: a plan must hold its longest request (as vLLM must hold max_model_len).
    if scenario.agents is not None and scenario.workload.concurrency is not None:
        raise FleetsimError("workload.concurrency: agent jobs run their own closed loop; set agents.agents instead")
    if scenario.agents is not None and scenario.agents.unit_tokens % eng.block_size:
        raise FleetsimError(f"agents.unit_tokens ({scenario.agents.unit_tokens}) must be a multiple of "
                            f"engine.block_size ({eng.block_size})")
    _check_scale(scenario)
    load = load_workload(scenario, model)
    work, programs, longest_prompt, longest = load.work, load.programs, load.longest_prompt, load.longest
    if programs_override is not None:
        longest_prompt, longest = longest_call(list(programs_override))
    moe = (scenario.moe_routing, scenario.moe_policy)
    cap = scenario.energy.power_cap_w
    if dis is None:
        num_gpus, replicas = scenario.resolved_gpus()
        plan = Plan(tp=scenario.tp, pp=scenario.pp, replicas=replicas, tp_nodes=scenario.tp_nodes, ep=scenario.ep,
                    attn_dp=scenario.attn_dp)
        pool = _Pool(env, model, load_gpu(scenario.gpu), node, fabric, plan, eng, router, moe, longest,
                     power_cap_w=cap)
        fleet, pools = pool.fleet, [pool]
    else:
        for name, default in _POOL_FIELDS.items():
            if getattr(scenario, name) != default:
                raise FleetsimError(f"{name}: disaggregated pools take their plans from [disagg] (prefill_* and "
                                    f"decode_*, e.g. --prefill-tp / --decode-tp), not from the top-level {name}")
        if scenario.num_gpus is not None and scenario.num_gpus != dis.num_gpus:
            raise FleetsimError(f"num_gpus = {scenario.num_gpus} but the prefill and decode pools use {dis.num_gpus}")
        p_plan, d_plan = dis.plan("prefill"), dis.plan("decode")
        # The prefill pool stops at each request's first token: it needs room for the longest prompt and one more.
        prefill = _Pool(env, model, load_gpu(dis.prefill_gpu or scenario.gpu), node, fabric, p_plan, eng, router,
                        (moe[0], dis.prefill_moe_policy), longest_prompt + 1, final=False, name="prefill",
                        power_cap_w=cap)
        decode = _Pool(env, model, load_gpu(dis.decode_gpu or scenario.gpu), node, fabric, d_plan, eng, router,
                       (moe[0], dis.decode_moe_policy), longest, first_index=len(prefill.fleet.replicas),
                       first_uid=prefill.engines, final=False, name="decode",  # DisaggFleet has the last word
                       power_cap_w=cap)
        # Each prefill engine's GPUs send their KV shards over their own NICs to the decode engine's GPUs (pools
        # on different nodes): as many parallel lanes as the smaller of the two engines has GPUs.
        lanes = min(p_plan.tp * p_plan.pp, d_plan.tp * d_plan.pp)
        bw = fabric.gbps_per_gpu * 1e9 * lanes
        kv_per_token = model.kv_bytes_per_token
        latency = fabric.latency_us * 1e-6
        fleet = DisaggFleet(env, prefill.fleet, decode.fleet, lambda r: latency + r.prompt * kv_per_token / bw)
        pools = [prefill, decode]
    max_model_len = min(p.max_model_len for p in pools)
    gpu_names = "+".join(dict.fromkeys(p.gpu.name for p in pools))
    if scenario.agents is not None:
        spec = scenario.agents
        if programs_override is not None:
            programs = list(programs_override)
        driver = AgentDriver(env, fleet, spec, spec.unit_tokens if eng.enable_prefix_caching else 0,
                             block_size=eng.block_size, program_scheduling=eng.scheduling == "program")
        driver.names, driver.clipped = load.names, load.clipped
        if dis is not None and driver.policy not in ("evict", "none"):
            raise FleetsimError(f"agents.kv_policy {spec.kv_policy}: holds or offloads a job's KV where its call "
                                f"ran, which needs colocated replicas (on split pools the next call's prefill runs "
                                f"on another pool); use evict or none")
        if driver.policy == "offload":
            if not eng.enable_prefix_caching:
                raise FleetsimError("agents.kv_policy offload: needs engine.enable_prefix_caching")
            _attach_host_caches(pools[0], node, eng)
        return Simulation(env, fleet, driver.requests, pools[-1].mem, max_model_len, model.name, gpu_names,
                          driver, programs, pools=pools)
    unit = work.block_tokens
    if unit and unit % eng.block_size:
        raise FleetsimError(f"engine.block_size ({eng.block_size}) must divide the trace's prefix block "
                            f"({unit} tokens) for prefix caching")
    requests = _requests_from(work.table, unit if eng.enable_prefix_caching else 0)
    return Simulation(env, fleet, requests, pools[-1].mem, max_model_len, model.name, gpu_names,
                      workload=work, pools=pools, concurrency=scenario.workload.concurrency)


@dataclass
class Workload:
    """A scenario's traffic, ready to simulate: the request table or the agent jobs, and its extent."""

    work: Prepared | None  # requests (None for agent jobs)
    programs: list[AgentProgram]  # agent jobs (empty for requests)
    names: list[str]  # agent trace: each job's session name
    clipped: int  # agent trace: calls clipped to the model's context
    shortest_prompt: int
    longest_prompt: int
    longest: int  # prompt + output of the longest request (or agent call)


def load_workload(scenario: Scenario, model) -> Workload:  # noqa: ANN001
    """Read or generate the scenario's traffic (lengths clipped to the model's context, never to a plan's KV room,
    so that every plan serves the same work)."""
    names: list[str] = []
    clipped = 0
    if scenario.agents is not None:
        spec = scenario.agents
        if spec.trace:
            programs, names, clipped = read_agent_trace(spec.trace, model.max_context)
        else:
            programs = generate_programs(spec, scenario.seed)
        longest_prompt, longest = longest_call(programs)
        return Workload(None, programs, names, clipped, 1, longest_prompt, longest)
    work = prepare(scenario.workload, scenario.seed, model.max_context)
    t = work.table
    if not t.height:
        return Workload(work, [], names, 0, 1, 1, 1)
    return Workload(work, [], names, 0, int(t["input_tokens"].min()), int(t["input_tokens"].max()),
                    int((t["input_tokens"] + t["output_tokens"]).max()))


def _check_scale(scenario: Scenario) -> None:
    """Refuse, before building anything, a run this machine cannot hold (sim/core/budget.py)."""
    dis = scenario.disagg
    if dis is None:
        for field in ("num_gpus", "replicas"):
            if getattr(scenario, field) is not None:
                check_gpus(getattr(scenario, field) * (scenario.tp * scenario.pp * scenario.attn_dp
                                                       if field == "replicas" else 1), f"--{field.replace('_', '-')}")
        engines = scenario.resolved_gpus()[1] * scenario.attn_dp * scenario.pp
    else:
        check_gpus(dis.num_gpus, "disagg (prefill + decode GPUs)")
        engines = sum(p.replicas * p.attn_dp * p.pp for p in (dis.plan("prefill"), dis.plan("decode")))
    check_memory("replicas' engines", engines, BYTES_PER_ENGINE, "--num-gpus or --replicas")
    if scenario.agents is not None:
        a = scenario.agents
        if a.trace is None:
            calls = a.programs * (a.turns + a.subagents * a.subagent_turns)
            check_memory("agent calls (jobs x (turns + sub-agents x their turns))", calls, BYTES_PER_REQUEST,
                         "--jobs, --turns or --subagents")
            check_memory("tool calls (jobs x turns x parallel tools)", a.programs * a.turns * a.parallel_tools, 64,
                         "--parallel-tools")
        return
    w = scenario.workload
    if w.arrival_kind != "trace":
        n = count_at_rate(w.rate or 1.0, w.num_requests, w.window_s)
        if n is not None:
            check_memory("requests", n, BYTES_PER_REQUEST, "--num-requests, or --rate x --duration")


def _attach_host_caches(pool: _Pool, node, eng) -> None:  # noqa: ANN001
    """Give each engine a host KV cache: per GPU, its share of the offload memory and its own PCIe link."""
    per_gpu_gb = eng.kv_offload_gb if eng.kv_offload_gb is not None else 0.5 * node.host_memory_gb / node.gpus_per_node
    block_bytes = pool.mem.kv_bytes_per_token * pool.mem.block_size  # on one GPU
    capacity = int(per_gpu_gb * 1e9 / block_bytes) // pool.plan.pp  # pipeline micro-batches split it
    for replica in pool.fleet.replicas:
        replica.attach_host_caches(capacity, block_bytes, pool.gpu.pcie_gbps)


_COSTS: dict[tuple, IterationCost] = {}
_COSTS_KEPT = 8


def power_model(gpu, model, cap_w: float | None) -> PowerModel:  # noqa: ANN001
    """The draw of one of `gpu`'s GPUs serving `model` (its peak at the model's compute format), under a cap."""
    return PowerModel.for_gpu(gpu.power_w, gpu.idle_watts, gpu.peak_flops(compute_dtype(model.weight_dtype)),
                              gpu.hbm_bytes_per_s, cap_w)


def _cost_model(model, gpu, node, fabric, plan: Plan, rules: dict[str, Any]) -> IterationCost:  # noqa: ANN001
    """The plan's step-cost model. Its step times are pure functions of the step, memoised inside it, so a process
    that builds the same dense plan again (a capacity search probes one plan at several rates) reuses the warm one:
    the same numbers, sooner. MoE plans get a fresh one, as a run attaches its own expert balancer to it. `rules`
    may hold a `power_cap` (a PowerModel), which keys the memo by its cap."""
    if model.moe is not None:
        return IterationCost(model, Cluster(gpu, node, fabric, plan.num_gpus), plan, **rules)
    key = (model, gpu, node, fabric, plan, tuple(sorted(rules.items(), key=lambda kv: kv[0])))
    try:
        cost = _COSTS.pop(key, None)
    except TypeError:  # an unhashable field: no sharing
        return IterationCost(model, Cluster(gpu, node, fabric, plan.num_gpus), plan, **rules)
    if cost is None:
        cost = IterationCost(model, Cluster(gpu, node, fabric, plan.num_gpus), plan, **rules)
    _COSTS[key] = cost  # most recently used last
    while len(_COSTS) > _COSTS_KEPT:
        del _COSTS[next(iter(_COSTS))]
    return cost


class _Pool:
    """Identical replicas of one plan on one GPU type, behind a router; checked by the one feasibility function
    the search uses too (sim/parallel/feasibility.py)."""

    def __init__(self, env: simpy.Environment, model, gpu, node, fabric, plan: Plan, eng,  # noqa: ANN001
                 router: str, moe: tuple[str, str], longest: int, first_index: int = 0, first_uid: int = 0,
                 final: bool = True, name: str = "", power_cap_w: float | None = None) -> None:
        self.gpu, self.plan, self.name, self.node = gpu, plan, name, node
        where = f"{name} pool: " if name else ""
        try:
            self.power = power_model(gpu, model, power_cap_w)
        except FleetsimError as exc:
            raise FleetsimError(f"{where}{exc}") from None
        limits = EngineLimits(eng.gpu_memory_utilization, eng.block_size, eng.max_num_batched_tokens,
                              eng.max_num_seqs, eng.watermark_fraction, eng.num_gpu_blocks_override)
        try:
            fit = fit_pool(model, gpu, node, plan, limits, moe_policy=moe[1], longest_request=longest)
        except FleetsimError as exc:
            raise FleetsimError(f"{where}{exc}") from None
        self.mem = fit.memory
        self.max_model_len = fit.max_model_len
        self.blocks_per_engine = fit.blocks_per_engine
        self.engines = plan.replicas * plan.attn_dp * plan.pp
        rules = eng.cost_args()
        if power_cap_w is not None:
            rules["power_cap"] = self.power
        cost = _cost_model(model, gpu, node, fabric, plan, rules)
        self.cost = cost
        self.balancer: Balancer | None = None
        if model.moe is not None:
            # Parsed even where it has no effect, so a bad routing spec fails the same way on every plan.
            routing = parse_routing(moe[0], model.num_moe_layers, model.moe.num_experts, model.moe.top_k)
            if plan.ep > 1:
                # Every EP plan samples its finite batches' imbalance, whatever the routing and policy.
                self.balancer = Balancer(parse_policy(moe[1]), routing, cost, plan.ep,
                                         gpus_per_node=node.gpus_per_node)
                cost.expert_profile = Profile(self.balancer)
            elif moe[0] != "uniform":
                # Without EP every GPU holds a TP slice of every expert: a skewed routing loads them all alike, and
                # hits fewer distinct experts (fewer weights read).
                cost.expert_activity = routing.distinct_experts
        self.fleet = Fleet(env, make_router(router), first_index=first_index, final=final)
        lanes = plan.attn_dp * plan.pp
        for k in range(plan.replicas):
            self.fleet.add_replica(lambda i, cb, k=k: Replica(env, i, cost, eng, self.max_model_len,
                                                              self.blocks_per_engine, first_uid + k * lanes,
                                                              plan.attn_dp, plan.pp, cb))


def _requests_from(table: pl.DataFrame, unit: int) -> list[Request]:
    arrivals = table["arrival_s"].to_list()
    inputs = table["input_tokens"].to_list()
    outputs = table["output_tokens"].to_list()
    hashes = table["prefix_hashes"].to_list() if unit and "prefix_hashes" in table.columns else None
    return [Request(i, arrivals[i], inputs[i], outputs[i],
                    tuple(hashes[i]) if hashes else None, unit if hashes else 0)
            for i in range(table.height)]


def execute(sim: Simulation, progress: Progress | None = None, progress_every_s: float = 0.25,
            stop: Callable[[float], bool] | None = None, stop_every_s: float = 1.0) -> bool:
    """Run until every request (or every agent job) has finished, or been rejected; or, with `stop`, until it says
    so (asked every `stop_every_s` simulated seconds with the time). True when `stop` ended the run."""
    env, fleet = sim.env, sim.fleet
    done = env.event()
    stopped = False
    if stop is not None:
        def watch():  # noqa: ANN202
            nonlocal stopped
            while not done.triggered:
                yield env.timeout(stop_every_s)
                if not done.triggered and stop(env.now):
                    stopped = True
                    done.succeed()

        env.process(watch())
    if sim.agents is not None:
        driver = sim.agents
        total = len(sim.programs)

        def job_done() -> None:
            if len(driver.jobs) == total and not done.triggered:
                done.succeed()

        driver.on_job_done = job_done
        driver.start(sim.programs)
        finished = lambda: len(driver.jobs)  # noqa: E731
    else:
        total = len(sim.requests)

        def check(_: Request) -> None:
            if fleet.finished == total and not done.triggered:
                done.succeed()

        fleet.on_finish(check)
        limit = sim.concurrency
        env.process(closed_loop(env, fleet, sim.requests, limit) if limit else fleet.open_loop(sim.requests))
        finished = lambda: fleet.finished  # noqa: E731
    if total == 0:
        return False
    # The cyclic collector is paused while the events run: the run's objects (requests, their runs, engines) live
    # until it ends and almost all its garbage is freed by reference counting, yet full collections scanned them
    # again and again (1.2 s of a 128-replica run's 20 s; 0.3 s paused, peak memory unchanged).
    enabled = gc.isenabled()
    gc.disable()
    try:
        if progress is None:
            env.run(until=done)
            return stopped
        last = time.perf_counter()
        while not done.triggered:
            if env.peek() == float("inf"):
                raise RuntimeError("simulation stalled with unfinished requests")
            env.step()
            now = time.perf_counter()
            if now - last > progress_every_s:
                progress(finished(), total)
                last = now
        progress(finished(), total)
        return stopped
    finally:
        if enabled:
            gc.enable()


def collect(scenario: Scenario, sim: Simulation, wall_s: float) -> Result:
    reps = sim.fleet.replicas
    ends = [e for rep in reps for e in rep.decode_step_ends()]  # indexed by Request.lane
    df, itl = request_table(sim.requests, ends)
    times, used, rep_idx = [], [], []
    util_means, peaks = [], []
    for rep in reps:
        t = np.frombuffer(rep.kv_times, dtype=np.float64).copy()
        u = np.frombuffer(rep.kv_used, dtype=np.int64).astype(np.float64) / rep.kv_blocks
        times.append(t)
        used.append(u)
        rep_idx.append(np.full(len(t), rep.index))
        if len(t) > 1:
            util_means.append(float(np.sum(u[:-1] * np.diff(t)) / (t[-1] - t[0])) if t[-1] > t[0] else float(u[0]))
        peaks.append(rep.kv_peak_fraction())
    summary = summarize(df, itl, slo_ttft_s=scenario.slo.ttft_s, slo_tpot_s=scenario.slo.tpot_s,
                        slo_e2el_s=scenario.slo.e2el_s, slo_itl_s=scenario.slo.itl_s,
                        busy_s=[r.busy_s for r in reps],
                        kv_util_mean=float(np.mean(util_means)) if util_means else 0.0,
                        kv_util_peak=float(max(peaks)) if peaks else 0.0)
    energy, watts = _energy(scenario, sim, summary, df)
    summary.update(energy)
    timeline = pl.DataFrame({
        "replica": np.concatenate(rep_idx) if rep_idx else [],
        "time_s": np.concatenate(times) if times else [],
        "kv_used_fraction": np.concatenate(used) if used else [],
        # Each GPU's draw over the step (or run of steps) that ended at time_s.
        "power_w_per_gpu": np.concatenate([watts[rep.index] for rep in reps]) if reps else [],
    })
    events = sum(r.events for r in reps) + len(sim.requests)
    steps = sum(r.steps for r in reps)
    info = {"wall_s": wall_s, "engine_events": events, "engine_steps": steps,
            "events_per_s": events / wall_s if wall_s > 0 else None,
            "steps_per_s": steps / wall_s if wall_s > 0 else None,
            "kv_blocks_per_engine": sim.pools[-1].blocks_per_engine if sim.pools else None,
            "max_model_len": sim.max_model_len, "replicas": len(reps),
            "engines": sum(len(rep.lanes) for rep in reps), "model": sim.model_name,
            "gpu": sim.gpu_name, "num_gpus": sum(p.plan.num_gpus for p in sim.pools),
            "engine": scenario.engine.preset, "precision": describe_precision(scenario.load_model()),
            # Which source costs each kind of kernel (per pool: the pools may be different GPUs).
            "kernel_sources": {p.name or "replicas": p.cost.kernel_sources() for p in sim.pools}}
    summary["sim_wall_s"] = wall_s
    if sim.concurrency:
        summary["max_concurrency"] = sim.concurrency
    if sim.workload is not None:
        if sim.workload.clipped:
            summary["requests_clipped"] = sim.workload.clipped
        if sim.workload.notes:
            info["trace_notes"] = sim.workload.notes
    for pool in sim.pools:
        if pool.balancer is not None:
            prefix = f"{pool.name}_" if len(sim.pools) > 1 else ""
            summary.update({prefix + k: v for k, v in _moe_summary(pool).items()})
    jobs = None
    if sim.agents is not None:
        jobs = pl.DataFrame(sim.agents.jobs).sort("program") if sim.agents.jobs else pl.DataFrame()
        if sim.agents.names and jobs.height:
            jobs = jobs.with_columns(pl.Series("session", [sim.agents.names[p] for p in jobs["program"]]))
        summary["requests_clipped"] = sim.agents.clipped
        summary.update(job_summary(jobs))
        if jobs.height:
            kwh, usd = summary.get("energy_kwh"), summary.get("usd_total")
            summary["joules_per_job"] = kwh * 3.6e6 / jobs.height if kwh is not None else None
            summary["usd_per_job"] = usd / jobs.height if usd is not None else None
        block_bytes = sim.memory.kv_bytes_per_token * sim.memory.block_size
        if jobs.height:  # each job's KV held while its tools ran, GB x seconds per GPU of its replica
            jobs = jobs.with_columns((pl.col("pinned_block_s") * block_bytes / 1e9).alias("kv_pinned_gb_s"))
        summary["kv_pins"] = sim.agents.pins
        summary["pinned_gb_s"] = sim.agents.pinned_block_s * block_bytes / 1e9  # per GPU of the replicas
        hosts = [h for r in reps for h in r.hosts]
        if hosts:
            summary["kv_offloaded_gb"] = sum(h.written_blocks for h in hosts) * block_bytes / 1e9  # per GPU
            summary["kv_reloaded_gb"] = sum(h.loaded_blocks for h in hosts) * block_bytes / 1e9
    return Result(scenario, df, summary, timeline, sim.memory, info, jobs,
                  sim.workload.table if sim.workload is not None else None, itl)


def _energy(scenario: Scenario, sim: Simulation, summary: dict[str, Any],
            df: pl.DataFrame) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """Energy and cost figures of the run (sim/energy/account.py) and each replica's per-GPU watts per step."""
    spec = scenario.energy
    pools = [PoolEnergy(p.fleet.replicas, p.power, p.cost.work, p.plan.tp * p.plan.pp * p.plan.attn_dp,
                        spec.gpu_usd_per_hour if spec.gpu_usd_per_hour is not None else p.gpu.price_per_hour_usd,
                        p.plan.num_gpus / p.node.gpus_per_node, p.node.overhead_power_w)
             for p in sim.pools]
    finished = df.filter(pl.col("status") == "finished")
    out, watts = energy_summary(pools, summary["duration_s"], float(finished["output_tokens"].sum()),
                                finished.height, pue=spec.pue, electricity_usd_per_kwh=spec.electricity_usd_per_kwh)
    out["power_cap_w"] = spec.power_cap_w
    return out, watts


def _moe_summary(pool: _Pool) -> dict[str, Any]:
    """Expert parallelism over the run, weighted by the token copies each step sent through the MoE layers:
    imbalance (busiest GPU's copies over the mean) under plain contiguous EP and under the pool's policy, bytes a
    token's copies move across GPUs per MoE layer, and the share of the engines' busy time spent in the MoE
    layers' routed experts and all-to-alls."""
    bal, reps = pool.balancer, pool.fleet.replicas
    profile = reps[0].cost.expert_profile
    mean = sum(rep.moe_tokens for rep in reps) * bal.routing.top_k / bal.gpus
    busy = sum(rep.busy_s for rep in reps)
    out: dict[str, Any] = {
        "moe_policy": bal.policy.label,
        "moe_imbalance_before": sum(rep.moe_busiest_before for rep in reps) / mean if mean else None,
        "moe_imbalance": sum(rep.moe_busiest for rep in reps) / mean if mean else None,
        "moe_a2a_bytes_per_token": profile.a2a_bytes_per_token(),
        "moe_time_share": sum(rep.moe_s for rep in reps) / busy if busy else None,
    }
    if bal.policy.every:
        # Every replica (one EP group) re-places every `every` of its steps.
        rebalances = sum(rep.steps for rep in reps) // bal.policy.every
        out["moe_rebalances"] = rebalances
        out["moe_rebalance_gb"] = rebalances * bal.rebalance_bytes / 1e9  # copied, all GPUs together
    return out


def run(scenario: Scenario | None = None, progress: Progress | None = None, **overrides: Any) -> Result:
    """Simulate a scenario (default: the shipped one) and return its results.

    Keyword overrides replace scenario fields, e.g. `run(model="llama-3.1-70b", tp=8, **{"workload.rate": 4})`.
    """
    scenario = (scenario or Scenario()).with_overrides(**overrides)
    t0 = time.perf_counter()
    sim = build(scenario)
    execute(sim, progress)
    return collect(scenario, sim, time.perf_counter() - t0)
