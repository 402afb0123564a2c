"""Build a simulation from a scenario, run it, and collect its results."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import simpy

from sim.agents.driver import AgentDriver
from sim.agents.program import AgentProgram
from sim.agents.spec import generate_programs
from sim.agents.traces import read_agent_trace
from sim.cost.iteration import IterationCost
from sim.errors import FleetsimError
from sim.hardware.catalog import load_fabric, load_gpu, load_node
from sim.hardware.cluster import Cluster
from sim.metrics.export import write_outputs
from sim.metrics.records import request_table
from sim.metrics.summary import job_summary, summarize
from sim.model.catalog import load_model
from sim.moe.balance import Balancer, parse_policy, step_balance
from sim.moe.routing import parse as parse_routing
from sim.parallel.memory import MemoryBudget, memory_budget
from sim.parallel.plan import Plan
from sim.scenario import Scenario
from sim.serving.disagg import DisaggFleet
from sim.serving.fleet import Fleet
from sim.serving.host_cache import HostKVCache
from sim.serving.kv_cache import KVCache
from sim.serving.replica import Replica
from sim.serving.request import Request
from sim.serving.router import make_router
from sim.workload.spec import Prepared, prepare

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

    def write(self, out_dir: str | Path, tables: dict[str, pl.DataFrame] | None = None,
              pages: dict[str, str] | None = None) -> list[Path]:
        """The run's tables and summary, plus any extra `tables` and HTML `pages`, written all or nothing."""
        doc = {"summary": self.summary, "run": self.info, "scenario": asdict(self.scenario),
               "memory_per_gpu": {"weights_gb": self.memory.weight_bytes / 1e9,
                                  "activations_gb": self.memory.activation_bytes / 1e9,
                                  "kv_cache_gb": self.memory.kv_bytes / 1e9,
                                  "kv_blocks": self.memory.num_blocks}}
        tables = {"requests": self.requests, "kv_timeline": self.kv_timeline, **(tables or {})}
        if self.jobs is not None:
            tables["jobs"] = self.jobs
        return write_outputs(Path(out_dir), tables, {"summary": doc}, pages)


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
    balancer: Balancer | None = None  # MoE expert balance under EP, when routing or policy is not the default
    workload: Prepared | None = None  # the request table simulated (request i is its row i), with its load notes


def build(scenario: Scenario) -> Simulation:
    model = load_model(scenario.model)
    eng = scenario.engine
    node, fabric = load_node(scenario.node), load_fabric(scenario.fabric)
    if model.moe is None and (scenario.moe_routing != "uniform" or scenario.moe_policy != "ep"):
        raise FleetsimError(f"moe_routing / moe_policy: {model.name} has no experts")
    env = simpy.Environment()
    dis = scenario.disagg
    router = scenario.router
    if router == "auto":
        router = "prefix-aware" if scenario.agents is not None else "round-robin"
    if dis is None:
        num_gpus, replicas = scenario.resolved_gpus()
        plan = Plan(tp=scenario.tp, pp=scenario.pp, replicas=replicas, tp_nodes=scenario.tp_nodes, ep=scenario.ep,
                    attn_dp=scenario.attn_dp)
        pool = _Pool(env, model, load_gpu(scenario.gpu), node, fabric, num_gpus, plan, eng, router,
                     moe=(scenario.moe_routing, scenario.moe_policy) if model.moe else None)
        fleet, pools = pool.fleet, [pool]
    else:
        if scenario.pp != 1:
            raise FleetsimError("disaggregated prefill/decode pools do not support pipeline parallelism (pp=1)")
        total = dis.prefill_replicas * dis.prefill_tp + dis.decode_replicas * dis.decode_tp
        if scenario.num_gpus is not None and scenario.num_gpus != total:
            raise FleetsimError(f"num_gpus = {scenario.num_gpus} but the prefill and decode pools use {total}")
        p_plan = Plan(tp=dis.prefill_tp, replicas=dis.prefill_replicas)
        d_plan = Plan(tp=dis.decode_tp, replicas=dis.decode_replicas)
        prefill = _Pool(env, model, load_gpu(dis.prefill_gpu or scenario.gpu), node, fabric,
                        p_plan.num_gpus, p_plan, eng, router, first_index=0, final=False)
        decode = _Pool(env, model, load_gpu(dis.decode_gpu or scenario.gpu), node, fabric,
                       d_plan.num_gpus, d_plan, eng, router, first_index=len(prefill.fleet.replicas))
        # Each prefill GPU sends its KV shard over its own NIC to the decode GPUs (pools on different nodes).
        lanes = min(dis.prefill_tp, dis.decode_tp)
        bw = fabric.gbps_per_gpu * 1e9 * lanes
        kv_per_token = model.kv_bytes_per_token
        latency = fabric.latency_us * 1e-6
        fleet = DisaggFleet(env, prefill.fleet, decode.fleet, lambda r: latency + r.prompt * kv_per_token / bw)
        pools = [prefill, decode]
    max_model_len = min(p.max_model_len for p in pools)
    gpu_names = "+".join(dict.fromkeys(p.gpu.name for p in pools))
    if scenario.agents is not None:
        spec = scenario.agents
        if spec.unit_tokens % eng.block_size:
            raise FleetsimError(f"agents.unit_tokens ({spec.unit_tokens}) must be a multiple of engine.block_size "
                                f"({eng.block_size})")
        driver = AgentDriver(env, fleet, spec, spec.unit_tokens if eng.enable_prefix_caching else 0)
        if driver.policy == "offload":
            if dis is not None:
                raise FleetsimError("agents.kv_policy offload: needs colocated replicas (not disaggregated pools)")
            if not eng.enable_prefix_caching:
                raise FleetsimError("agents.kv_policy offload: needs engine.enable_prefix_caching")
            _attach_host_caches(pools[0], node, eng, scenario.pp)
        if spec.trace:
            programs, driver.names, driver.clipped = read_agent_trace(spec.trace, max_model_len)
        else:
            programs = generate_programs(spec, scenario.seed)
        return Simulation(env, fleet, driver.requests, pools[-1].mem, max_model_len, model.name, gpu_names,
                          driver, programs, pools[0].balancer)
    work = prepare(scenario.workload, scenario.seed, max_model_len)
    unit = work.block_tokens
    if unit and unit % eng.block_size:
        raise FleetsimError(f"engine.block_size ({eng.block_size}) must divide the trace's prefix block "
                            f"({unit} tokens) for prefix caching")
    requests = _requests_from(work.table, unit if eng.enable_prefix_caching else 0)
    return Simulation(env, fleet, requests, pools[-1].mem, max_model_len, model.name, gpu_names,
                      balancer=pools[0].balancer, workload=work)


def _attach_host_caches(pool: _Pool, node, eng, pp: int) -> None:  # noqa: ANN001
    """Give each engine a host KV cache: per GPU, its share of the offload memory and its own PCIe link."""
    per_gpu_gb = eng.kv_offload_gb if eng.kv_offload_gb is not None else 0.5 * node.host_memory_gb / node.gpus_per_node
    block_bytes = pool.mem.kv_bytes_per_token * pool.mem.block_size  # on one GPU
    capacity = int(per_gpu_gb * 1e9 / block_bytes) // pp  # pipeline virtual engines split it
    for replica in pool.fleet.replicas:
        replica.host = HostKVCache(capacity, block_bytes, pool.gpu.pcie_gbps)


class _Pool:
    """Identical replicas of one plan on one GPU type, behind a router."""

    def __init__(self, env: simpy.Environment, model, gpu, node, fabric, num_gpus: int, plan: Plan,  # noqa: ANN001
                 eng, router: str, first_index: int = 0, final: bool = True,  # noqa: ANN001
                 moe: tuple[str, str] | None = None) -> None:
        self.gpu = gpu
        cluster = Cluster(gpu, node, fabric, num_gpus)
        if plan.tp_nodes and plan.tp // plan.tp_nodes > cluster.node.gpus_per_node:
            raise FleetsimError(f"tp_nodes={plan.tp_nodes}: a TP{plan.tp} group needs {plan.tp // plan.tp_nodes} "
                                f"GPUs per node but {cluster.node.name} has {cluster.node.gpus_per_node}")
        if model.num_layers % plan.pp:
            raise FleetsimError(f"pp={plan.pp} does not divide {model.name}'s {model.num_layers} layers")
        if model.num_heads % plan.tp:
            raise FleetsimError(f"tp={plan.tp} does not divide {model.name}'s {model.num_heads} attention heads")
        if not model.mla and model.num_kv_heads % plan.tp and plan.tp % model.num_kv_heads:
            raise FleetsimError(f"tp={plan.tp} neither divides nor is a multiple of {model.name}'s "
                                f"{model.num_kv_heads} KV heads")
        if plan.ep > 1 and model.moe is None:
            raise FleetsimError(f"ep={plan.ep}: {model.name} has no experts (expert parallelism is for MoE models)")
        if plan.ep > 1 and model.moe.num_experts % plan.ep:
            raise FleetsimError(f"ep={plan.ep} does not divide {model.name}'s {model.moe.num_experts} experts")
        policy = parse_policy(moe[1]) if moe is not None else None
        if policy is not None and policy.kind != "ep" and plan.ep == 1:
            raise FleetsimError(f"moe_policy {policy.label}: needs expert parallelism (ep > 1)")
        # Activations are per GPU: sized by one attention rank's step (the engine knobs are per rank, as in vLLM).
        self.mem = memory_budget(model, gpu, plan, gpu_memory_utilization=eng.gpu_memory_utilization,
                                 block_size=eng.block_size, max_batched_tokens=eng.max_num_batched_tokens,
                                 max_num_seqs=eng.max_num_seqs, blocks_override=eng.num_gpu_blocks_override,
                                 redundant_experts=policy.redundant if policy is not None else 0)
        if plan.attn_dp > 1:
            # One scheduler stands for the attention ranks (balanced): its limits are the ranks' together.
            eng = dataclasses.replace(eng, max_num_seqs=eng.max_num_seqs * plan.attn_dp,
                                      max_num_batched_tokens=eng.max_num_batched_tokens * plan.attn_dp)
        # Pipeline parallelism keeps one micro-batch per stage in flight: like vLLM, each replica runs `pp` virtual
        # engines (schedulers), each with 1/pp of the KV blocks, whose steps traverse every stage.
        blocks = self.mem.num_blocks // plan.pp
        if blocks < 1:
            raise FleetsimError(f"plan {plan.label()}: {self.mem.num_blocks} KV blocks cannot be shared by "
                                f"{plan.pp} pipeline micro-batches")
        self.max_model_len = min(model.max_context, (blocks - int(eng.watermark * blocks)) * eng.block_size)
        self.fleet = Fleet(env, make_router(router), first_index=first_index, final=final)
        cost = IterationCost(model, cluster, plan, eng.step_overhead_s)
        self.balancer: Balancer | None = None
        if moe is not None:
            # Parsed even where it has no effect, so a bad routing spec fails the same way on every plan.
            routing = parse_routing(moe[0], model.num_moe_layers, model.moe.num_experts, model.moe.top_k)
            # Without EP every GPU holds a TP slice of every expert: a skewed routing loads them all alike.
            if plan.ep > 1 and (moe[0] != "uniform" or policy.kind != "ep"):
                self.balancer = Balancer(policy, routing, cost, plan.ep, gpus_per_node=node.gpus_per_node)
                cost.moe_balance = step_balance(self.balancer)
        for _ in range(plan.replicas * plan.pp):
            self.fleet.add_replica(lambda i, cb: Replica(env, i, cost, KVCache(blocks, eng.block_size,
                                                                               eng.enable_prefix_caching),
                                                         eng, self.max_model_len, cb))


def _requests_from(table: pl.DataFrame, unit: int) -> list[Request]:
    arrivals = table["arrival_s"].to_list()
    inputs = table["input_tokens"].to_list()
    outputs = table["output_tokens"].to_list()
    hashes = table["prefix_hashes"].to_list() if unit and "prefix_hashes" in table.columns else None
    return [Request(i, arrivals[i], inputs[i], outputs[i],
                    tuple(hashes[i]) if hashes else None, unit if hashes else 0)
            for i in range(table.height)]


def execute(sim: Simulation, progress: Progress | None = None, progress_every_s: float = 0.25) -> None:
    """Run until every request (or every agent job) has finished, or been rejected."""
    env, fleet = sim.env, sim.fleet
    done = env.event()
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
        env.process(fleet.open_loop(sim.requests))
        finished = lambda: fleet.finished  # noqa: E731
    if total == 0:
        return
    if progress is None:
        env.run(until=done)
        return
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


def collect(scenario: Scenario, sim: Simulation, wall_s: float) -> Result:
    reps = sim.fleet.replicas
    ends = [r.decode_step_ends() for r in reps]
    df, itl = request_table(sim.requests, ends)
    times, used, rep_idx = [], [], []
    util_means, peaks = [], []
    for rep in reps:
        t = np.array(rep.kv_times)
        u = np.array(rep.kv_used, dtype=float) / rep.kv.num_blocks
        times.append(t)
        used.append(u)
        rep_idx.append(np.full(len(t), rep.index))
        if len(t) > 1:
            util_means.append(float(np.sum(u[:-1] * np.diff(t)) / (t[-1] - t[0])) if t[-1] > t[0] else float(u[0]))
        peaks.append(rep.kv.peak_used / rep.kv.num_blocks)
    timeline = pl.DataFrame({
        "replica": np.concatenate(rep_idx) if rep_idx else [],
        "time_s": np.concatenate(times) if times else [],
        "kv_used_fraction": np.concatenate(used) if used else [],
    })
    summary = summarize(df, itl, slo_ttft_s=scenario.slo.ttft_s, slo_tpot_s=scenario.slo.tpot_s,
                        busy_s=[r.busy_s for r in reps],
                        kv_util_mean=float(np.mean(util_means)) if util_means else 0.0,
                        kv_util_peak=float(max(peaks)) if peaks else 0.0)
    events = sum(r.events for r in reps) + len(sim.requests)
    steps = sum(r.steps for r in reps)
    info = {"wall_s": wall_s, "engine_events": events, "engine_steps": steps,
            "events_per_s": events / wall_s if wall_s > 0 else None,
            "steps_per_s": steps / wall_s if wall_s > 0 else None,
            "kv_blocks_per_replica": sim.memory.num_blocks, "max_model_len": sim.max_model_len,
            "replicas": len(reps) // scenario.pp, "engines": len(reps), "model": sim.model_name,
            "gpu": sim.gpu_name, "num_gpus": _gpus_used(scenario, len(reps))}
    summary["sim_wall_s"] = wall_s
    if sim.workload is not None:
        if sim.workload.clipped:
            summary["requests_clipped"] = sim.workload.clipped
        if sim.workload.notes:
            info["trace_notes"] = sim.workload.notes
    bal = sim.balancer
    if bal is not None:
        r = bal.evaluate(_mean_step_tokens(sim, reps))
        summary["moe_imbalance"] = r["imbalance"]  # at the run's mean step size
        if bal.policy.every:
            # Every replica (one EP group, its pipeline engines together) re-places every `every` of its steps.
            rebalances = sum(rep.steps for rep in reps) // scenario.pp // bal.policy.every
            summary["moe_rebalances"] = rebalances
            summary["moe_rebalance_gb"] = rebalances * bal.rebalance_bytes / 1e9  # copied, all GPUs together
    jobs = None
    if sim.agents is not None:
        jobs = pl.DataFrame(sim.agents.jobs).sort("program") if sim.agents.jobs else pl.DataFrame()
        if sim.agents.names and jobs.height:
            jobs = jobs.with_columns(pl.Series("session", [sim.agents.names[p] for p in jobs["program"]]))
        summary["requests_clipped"] = sim.agents.clipped
        summary.update(job_summary(jobs))
        block_bytes = sim.memory.kv_bytes_per_token * sim.memory.block_size
        summary["kv_pins"] = sim.agents.pins
        summary["pinned_gb_s"] = sim.agents.pinned_block_s * block_bytes / 1e9  # per GPU of the replicas
        hosts = [r.host for r in reps if r.host is not None]
        if hosts:
            summary["kv_offloaded_gb"] = sum(h.written_blocks for h in hosts) * block_bytes / 1e9  # per GPU
            summary["kv_reloaded_gb"] = sum(h.loaded_blocks for h in hosts) * block_bytes / 1e9
    return Result(scenario, df, summary, timeline, sim.memory, info, jobs,
                  sim.workload.table if sim.workload is not None else None)


def _mean_step_tokens(sim: Simulation, reps: list[Replica]) -> int:
    """Tokens per engine step over the run: prompt tokens (cached prefixes included) and output tokens."""
    steps = sum(rep.steps for rep in reps)
    tokens = sum(r.prompt + r.output for r in sim.requests)
    return max(1, round(tokens / steps)) if steps else 1


def _gpus_used(scenario: Scenario, engines: int) -> int:
    d = scenario.disagg
    if d is not None:
        return d.prefill_replicas * d.prefill_tp + d.decode_replicas * d.decode_tp
    return engines // scenario.pp * scenario.tp * scenario.pp * scenario.attn_dp


def run(scenario: Scenario | None = None, progress: Progress | None = None, **overrides: Any) -> Result:
    """Simulate a scenario (default: the shipped one) and return its results.

    Keyword overrides replace scenario fields, e.g. `run(model="llama-3.1-70b", tp=8, **{"workload.rate": 4})`.
    """
    scenario = (scenario or Scenario()).with_overrides(**overrides)
    t0 = time.perf_counter()
    sim = build(scenario)
    execute(sim, progress)
    return collect(scenario, sim, time.perf_counter() - t0)
