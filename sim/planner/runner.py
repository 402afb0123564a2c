"""Search the plan space: simulate every feasible plan (in parallel, never twice), rank by an objective.

Each (plan, knobs) becomes a full scenario whose hash keys the results store; a plan that an analytical bound
proves cannot meet the SLOs is reported as pruned, one that does not fit as infeasible, both with their reason.
Capacity mode finds, per plan, the highest arrival rate whose SLO attainment stays at or above a target.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from sim.cost.iteration import IterationCost
from sim.agents.retention import retention
from sim.errors import FleetsimError
from sim.hardware.catalog import load_fabric, load_gpu, load_node
from sim.hardware.cluster import Cluster
from sim.metrics.export import write_into
from sim.runner import check_moe_options, load_workload, run
from sim.parallel.plan import Plan
from sim.scenario import DisaggSpec, Scenario
from sim.planner.bounds import slo_bound_violation
from sim.planner.capacity import capacity as find_capacity
from sim.planner.ranking import OBJECTIVES, describe_order, pareto_front, rank
from sim.planner.verdict import advice, closest, explain, slo_misses, status
from sim.report.search_report import PLOTLY_BUNDLE, plotly_bundle, report_html
from sim.core.budget import MAX_PLANS, check_gpus
from sim.planner.space import Candidate, SearchSpace, WorkloadNeeds, count_plans, enumerate_candidates, enumerate_mixed
from sim.planner.store import ResultStore, scenario_key
from sim.workload.build import build_requests

Progress = Callable[[int, int], None]
EXECUTORS = ("local", "ray")
SUMMARY_KEYS = (
    "num_requests", "num_finished", "num_rejected", "offered_rps", "throughput_rps", "output_tokens_per_s",
    "goodput_rps", "goodput_output_tokens_per_s", "slo_attainment", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s",
    "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "itl_p99_s", "e2e_p50_s", "e2e_p90_s", "queue_delay_p90_s",
    "preemptions", "gpu_busy_fraction", "kv_util_peak", "sim_wall_s",
    "num_jobs_failed", "jct_mean_s", "jct_p90_s", "jct_p99_s", "reprefill_tokens", "kv_pins",
    "moe_imbalance", "moe_imbalance_before", "moe_a2a_bytes_per_token", "moe_time_share",
    "energy_kwh", "joules_per_output_token", "avg_power_per_gpu_w", "peak_power_per_gpu_w", "cluster_usd_per_hour",
    "usd_per_mtok", "itl_max_p90_s",
)


class SearchInterrupted(Exception):
    """The search stopped early; every finished result is in the store and a rerun resumes."""

    def __init__(self, done: int, total: int, store: Path) -> None:
        super().__init__(f"search interrupted after {done} of {total} simulations; results kept in {store}; "
                         f"run the same command again to resume")
        self.done, self.total, self.store = done, total, store


@dataclass
class SearchResult:
    table: pl.DataFrame  # every plan: ranked feasible ones first, then pruned and infeasible with reasons
    objective: str
    simulated: int  # simulations run by this call
    reused: int  # results taken from the store
    out_dir: Path | None
    wall_s: float

    verdict: dict[str, Any] = dataclasses.field(default_factory=dict)  # status, order, explanation, closest, advice

    @property
    def winner(self) -> dict[str, Any] | None:
        """The best plan that meets the SLOs; None when none does (`verdict['closest']` lists the nearest)."""
        ok = self.table.filter(pl.col("status") == "ok")
        return ok.row(0, named=True) if ok.height and ok["meets_slo"][0] else None

    @property
    def status(self) -> str:
        """ok, no_plan_meets_slo or no_feasible_plan."""
        return self.verdict["status"]


def evaluate(scenario: Scenario, capacity: bool = False, attainment: float = 0.9,
             guess: float | None = None) -> dict[str, Any]:
    """Simulate one scenario (in a worker process) and return its result row. In capacity mode, `guess` (a
    sibling plan's capacity) seeds the search."""
    t0 = time.perf_counter()
    try:
        row = _evaluate(scenario, capacity, attainment, guess)
    except FleetsimError as exc:
        # The plan space's checks should catch what cannot run; if one slips through, report it, don't crash.
        row = {"error": str(exc)}
    row["eval_wall_s"] = time.perf_counter() - t0
    return row


def _evaluate(scenario: Scenario, capacity: bool, attainment: float, guess: float | None = None) -> dict[str, Any]:
    if capacity:
        rate, summary = find_capacity(scenario, attainment, guess=guess)
        row = {k: summary.get(k) for k in SUMMARY_KEYS}
        if scenario.agents is not None:
            row["capacity_agents"] = rate
        else:  # the rate the run actually offered at the capacity found (the workload keeps --rate exactly)
            row["capacity_rps"] = summary.get("offered_rps") or rate if rate > 0 else 0.0
    else:
        row = {k: v for k, v in run(scenario).summary.items() if k in SUMMARY_KEYS}
    return row


def search(scenario: Scenario | None = None, *, space: SearchSpace | None = None, objective: str = "goodput",
           executor: str = "local", workers: int | None = None, out_dir: str | Path | None = None,
           capacity: bool = False, attainment: float = 0.9, price_per_gpu_hour: float | None = None,
           progress: Progress | None = None, max_new: int | None = None,
           on_wait: Callable[[], None] | None = None, **overrides: Any) -> SearchResult:
    """Rank every execution plan of the scenario's model on its cluster (num_gpus GPUs) for its workload and SLOs.

    `out_dir` holds the results store (resumable) and, at the end, plans.parquet and search.json. `max_new` stops
    after that many new simulations (raising SearchInterrupted), as a kill would. `on_wait` is called if another
    search holds the store's lock (this one then waits for it and reuses its results)."""
    t_start = time.perf_counter()
    if objective not in OBJECTIVES:
        raise FleetsimError(f"objective: expected one of {', '.join(OBJECTIVES)}, got '{objective}'")
    if executor not in EXECUTORS:
        raise FleetsimError(f"executor: expected one of {', '.join(EXECUTORS)}, got '{executor}'")
    if executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:  # before anything is written
            raise FleetsimError("--executor ray needs Ray: pip install 'fleetsim[ray]'")
    if not 0.0 < attainment <= 1.0:
        raise FleetsimError(f"attainment: expected a fraction in (0, 1], got {attainment!r}")
    base = (scenario or Scenario()).with_overrides(**overrides)
    if capacity and base.slo.itl_s is not None:
        raise FleetsimError("slo.itl_s: capacity mode checks each request's TTFT, TPOT and E2EL as it finishes; a "
                            "longest-token-gap target is not supported there (drop --capacity or the ITL target)")
    if price_per_gpu_hour is not None and base.energy.gpu_usd_per_hour is None:
        # Every plan's run prices its GPU hours (and its $ per million tokens) at the search's price.
        base = base.with_overrides(**{"energy.gpu_usd_per_hour": price_per_gpu_hour})
    elif price_per_gpu_hour is None:
        price_per_gpu_hour = base.energy.gpu_usd_per_hour
    space = space or SearchSpace()
    if capacity:  # how much traffic the cluster takes: fewer GPUs would only take proportionally less
        space = dataclasses.replace(space, all_gpus=True)
    if capacity and base.agents is not None and base.slo.jct_s is None:
        raise FleetsimError("capacity for agent jobs needs a JCT target: set slo.jct_s (--slo-jct)")
    model, gpu, node = base.load_model(), load_gpu(base.gpu), load_node(base.node)
    check_moe_options(base, model)
    if base.disagg is not None:
        num_gpus = base.num_gpus or base.disagg.num_gpus
    else:
        num_gpus = base.resolved_gpus()[0]
    fabric = load_fabric(base.fabric)
    if capacity and base.agents is None and base.workload.num_requests is None:
        table, _ = build_requests(base.workload, base.seed)
        base = base.with_overrides(**{"workload.num_requests": table.height, "workload.duration_s": None})
    load = load_workload(base, model)
    shortest = load.shortest_prompt
    eng = base.engine
    needs = WorkloadNeeds(model, node, eng, base.moe_policy, load.longest_prompt, load.longest)
    gpus = {gpu.name: gpu}
    if space.second_gpu:
        second = load_gpu(space.second_gpu)
        gpus[second.name] = second
        candidates = enumerate_mixed(model, [(gpu, num_gpus), (second, space.second_num_gpus)], node, space, needs)
        num_gpus += space.second_num_gpus
    else:
        check_gpus(num_gpus, "--num-gpus")
        planned = count_plans(model, num_gpus, space)
        if planned > MAX_PLANS:
            raise FleetsimError(f"search: {num_gpus:,} GPUs give about {planned:,} plans (at most {MAX_PLANS:,}); "
                                f"narrow the space with --tp, --pp, --attn-dp or --all-gpus, or plan fewer GPUs")
        candidates = enumerate_candidates(model, gpu, node, num_gpus, space, needs)
    if not candidates:
        raise FleetsimError(f"search: no plan in this space (--tp {','.join(map(str, space.tp or ())) or 'all'}, "
                            f"--pp {','.join(map(str, space.pp or ())) or 'all'}, --attn-dp "
                            f"{','.join(map(str, space.attn_dp or ())) or 'all'}) splits {num_gpus} GPU(s)"
                            + (" exactly (--all-gpus)" if space.all_gpus else ""))
    if (space.moe_policies or (space.ep and max(space.ep) > 1)) and model.moe is None:
        raise FleetsimError(f"--ep / --moe-policies: {model.name} has no experts")
    if space.kv_policies:
        if base.agents is None:
            raise FleetsimError("kv_policies: sweeping KV retention needs an agent workload ([agents] or --agents)")
        for policy in space.kv_policies:
            retention(policy)
        candidates = [dataclasses.replace(c, kv_policy=p) for c in candidates for p in space.kv_policies]

    if price_per_gpu_hour is not None and not (math.isfinite(price_per_gpu_hour) and price_per_gpu_hour > 0):
        raise FleetsimError(f"price: expected a positive $/GPU-hour, got {price_per_gpu_hour!r}")

    def hourly(cand: Candidate) -> float:
        """$ per hour of the GPUs a candidate uses (each pool at its own GPU's price unless one is given)."""
        if not cand.prefill_gpu:
            used = cand.plan.num_gpus + (cand.prefill.num_gpus if cand.prefill else 0)
            return used * (price_per_gpu_hour if price_per_gpu_hour is not None else gpu.price_per_hour_usd)
        pools = ((cand.prefill_gpu, cand.prefill.num_gpus), (cand.decode_gpu, cand.plan.num_gpus))
        return sum(n * (price_per_gpu_hour if price_per_gpu_hour is not None else gpus[g].price_per_hour_usd)
                   for g, n in pools)
    store_dir = Path(out_dir) if out_dir else None
    with ResultStore(store_dir / "results.jsonl" if store_dir else None, waiting=on_wait) as store:
        rows: list[dict[str, Any]] = []
        tasks: list[Task] = []
        prune = objective in ("goodput", "cost", "energy", "gpus") and not capacity
        for cand in candidates:
            sc = scenario_for(base, cand, num_gpus)
            head = {**_head(cand, num_gpus), "hourly_usd": hourly(cand)}
            if cand.reason:
                rows.append({**head, "status": "infeasible", "reason": cand.reason})
                continue
            if prune:
                rules = base.engine.cost_args()

                def pool_cost(plan: Plan, gpu_name: str) -> IterationCost:
                    cluster = Cluster(gpus[gpu_name or gpu.name], node, fabric, plan.num_gpus)
                    return IterationCost(model, cluster, plan, **rules)

                decode_cost = pool_cost(cand.plan, cand.decode_gpu)
                prefill_cost = pool_cost(cand.prefill, cand.prefill_gpu) if cand.prefill else decode_cost
                why = slo_bound_violation(prefill_cost, decode_cost, shortest, base.slo.ttft_s, base.slo.tpot_s)
                if why:
                    rows.append({**head, "status": "pruned", "reason": why})
                    continue
            key = scenario_key(sc, {"capacity": capacity, "attainment": attainment if capacity else None})
            cached = store.get(key)
            if cached is not None:
                rows.append(_result_row(head, cached, key, reused=True))
            else:
                tasks.append(Task(key, sc, head))
        reused = sum(1 for r in rows if r.get("reused"))
        total = len(tasks)
        followers: dict[str, list[Task]] = {}
        if capacity:
            tasks, followers = _capacity_order(tasks, rows)

        def finished(key: str, head: dict[str, Any], row: dict[str, Any]) -> None:
            store.put(key, row)
            rows.append(_result_row(head, row, key, reused=False))
            if progress:
                progress(store.added, total)
            if max_new is not None and store.added >= max_new and store.added < total:
                raise SearchInterrupted(store.added, total, store.path)

        if progress:
            progress(0, total)
        _execute(tasks, finished, executor, workers, capacity, attainment, followers)
        table = _finish_table(rows, objective, base, capacity)
        verdict = _verdict(table, objective, num_gpus, base)
        if store_dir:
            doc = {"objective": objective, "num_gpus": num_gpus, "model": model.name, "gpu": gpu.name,
                   "slo_ttft_s": base.slo.ttft_s, "slo_tpot_s": base.slo.tpot_s, "capacity_mode": capacity,
                   "simulated": store.added, "reused": reused, "plans": table.height, **verdict}
            title = f"{model.name} on up to {num_gpus}x {gpu.name}: plans ranked by {objective}"
            slo = {"ttft_s": base.slo.ttft_s, "tpot_s": base.slo.tpot_s}
            page = report_html(table, verdict, title, slo, _top_runs(base, table, capacity))
            files = {"plans.csv": _csv(table)}
            if not (store_dir / PLOTLY_BUNDLE).exists():
                files[PLOTLY_BUNDLE] = plotly_bundle()
            write_into(store_dir, {"plans": table}, {"search": doc}, {"report": page}, files)
        return SearchResult(table, objective, store.added, reused, store_dir, time.perf_counter() - t_start, verdict)


def _verdict(table: pl.DataFrame, objective: str, num_gpus: int, base: Scenario) -> dict[str, Any]:
    """The answer's facts, for the CLI, the JSON and search.json alike."""
    ok = table.filter(pl.col("status") == "ok")
    state = status(table)
    doc: dict[str, Any] = {"status": state, "order": describe_order(objective, table.columns),
                           "winner": None, "runner_up": None, "explanation": None, "closest": [], "advice": []}
    if state == "ok":
        win = ok.row(0, named=True)
        runner = ok.row(1, named=True) if ok.height > 1 else None
        doc.update(winner=win, runner_up=runner, explanation=explain(win, runner, objective, table.columns))
    else:
        rate = base.workload.rate if base.agents is None else None
        doc.update(closest=closest(table), advice=advice(table, num_gpus, rate))
    return doc


def _result_row(head: dict[str, Any], row: dict[str, Any], key: str, reused: bool) -> dict[str, Any]:
    if "error" in row:
        return {**head, "status": "infeasible", "reason": row["error"], "key": key, "reused": reused,
                "eval_wall_s": row.get("eval_wall_s")}
    return {**head, **row, "status": "ok", "reason": "", "key": key, "reused": reused}


def scenario_for(base: Scenario, cand: Candidate, num_gpus: int) -> Scenario:
    """The full scenario a candidate plan runs (also used to re-run a search's winner)."""
    knobs = {"engine.max_num_seqs": cand.max_num_seqs, "engine.max_num_batched_tokens": cand.max_num_batched_tokens}
    if cand.kv_policy:
        knobs["agents.kv_policy"] = cand.kv_policy
    if cand.prefill is not None:
        p, d = cand.prefill, cand.plan
        policy = cand.moe_policy or base.moe_policy
        spec = DisaggSpec(prefill_replicas=p.replicas, prefill_tp=p.tp, prefill_pp=p.pp, prefill_attn_dp=p.attn_dp,
                          prefill_ep=p.ep, prefill_moe_policy=policy if p.ep > 1 else "ep",
                          decode_replicas=d.replicas, decode_tp=d.tp, decode_pp=d.pp, decode_attn_dp=d.attn_dp,
                          decode_ep=d.ep, decode_moe_policy=policy if d.ep > 1 else "ep",
                          prefill_gpu=cand.prefill_gpu, decode_gpu=cand.decode_gpu)
        return dataclasses.replace(base.with_overrides(**knobs), tp=1, pp=1, tp_nodes=0, ep=1, attn_dp=1,
                                   moe_policy="ep", disagg=spec, num_gpus=num_gpus, replicas=None)
    if cand.moe_policy:
        knobs["moe_policy"] = cand.moe_policy
    p = cand.plan
    return dataclasses.replace(base.with_overrides(tp=p.tp, pp=p.pp, replicas=p.replicas, num_gpus=p.num_gpus,
                                                   tp_nodes=0, ep=p.ep, attn_dp=p.attn_dp, **knobs), disagg=None)


def candidate_from_row(row: dict[str, Any]) -> Candidate:
    plan = Plan(tp=row["tp"], pp=row["pp"], replicas=row["replicas"], ep=row.get("ep") or 1,
                attn_dp=row.get("attn_dp") or 1)
    prefill = None
    if row.get("prefill_tp"):
        prefill = Plan(tp=row["prefill_tp"], pp=row.get("prefill_pp") or 1, replicas=row["prefill_replicas"],
                       ep=row.get("prefill_ep") or 1, attn_dp=row.get("prefill_attn_dp") or 1)
    return Candidate(plan, row["max_num_seqs"], row["max_num_batched_tokens"], prefill=prefill,
                     prefill_gpu=row.get("prefill_gpu") or "", decode_gpu=row.get("decode_gpu") or "",
                     kv_policy=row.get("kv_policy") or "", moe_policy=row.get("moe_policy") or "")


def _head(cand: Candidate, num_gpus: int) -> dict[str, Any]:
    """The plan's columns; num_gpus is what it uses (a colocated plan may use fewer than the cluster's)."""
    used = num_gpus if cand.prefill is not None else cand.plan.num_gpus
    head = {"plan": cand.label, "kind": "disaggregated" if cand.prefill else "colocated", "tp": cand.plan.tp,
            "pp": cand.plan.pp, "replicas": cand.plan.replicas, "ep": cand.plan.ep, "attn_dp": cand.plan.attn_dp,
            "num_gpus": used,
            "max_num_seqs": cand.max_num_seqs, "max_num_batched_tokens": cand.max_num_batched_tokens,
            "prefill_replicas": None, "prefill_tp": None, "prefill_pp": None, "prefill_attn_dp": None,
            "prefill_ep": None, "prefill_gpu": None, "decode_gpu": None,
            "kv_policy": cand.kv_policy or None, "moe_policy": cand.moe_policy or None}
    if cand.prefill is not None:
        p = cand.prefill
        head.update(prefill_replicas=p.replicas, prefill_tp=p.tp, prefill_pp=p.pp, prefill_attn_dp=p.attn_dp,
                    prefill_ep=p.ep)
        head["prefill_gpu"], head["decode_gpu"] = cand.prefill_gpu or None, cand.decode_gpu or None
    return head


@dataclass(frozen=True)
class Task:
    key: str
    scenario: Scenario
    head: dict[str, Any]
    guess: float | None = None  # capacity mode: where the search starts (a sibling's capacity)


def _knobs(head: dict[str, Any]) -> tuple[int, int]:
    return head["max_num_batched_tokens"], head["max_num_seqs"]


def _capacity_order(tasks: list[Task], rows: list[dict[str, Any]]) -> tuple[list[Task], dict[str, list[Task]]]:
    """Capacity mode: the tasks to start now, and those to start when another finishes, with its capacity as their
    guess. A plan's engine-knob variants have close capacities, closest when they share the token budget: the
    variant with the smallest knobs starts from the analytical estimate; one with the smallest max_num_seqs of its
    budget follows it; the others follow that one. The choice is fixed (not whichever worker finishes first), so
    results do not depend on timing, and a parent whose result the store holds gives its guess at once."""
    groups: dict[str, list[Task]] = {}
    for task in tasks:
        groups.setdefault(task.head["plan"], []).append(task)
    done = {}  # plan -> {knobs: capacity} of results reused from the store
    for row in rows:
        if row.get("reused") and row.get("status") == "ok" and "max_num_seqs" in row:
            done.setdefault(row["plan"], {})[_knobs(row)] = row.get("capacity_rps") or None
    now: list[Task] = []
    followers: dict[str, list[Task]] = {}
    for plan, group in groups.items():
        pending = {_knobs(t.head): t for t in group}
        known = done.get(plan, {})
        every = sorted(set(pending) | set(known))
        root = every[0]
        for knobs in sorted(pending):
            task = pending[knobs]
            same_budget = [k for k in every if k[0] == knobs[0]]
            parent = None if knobs == root else (same_budget[0] if same_budget[0] != knobs else root)
            if parent in known:
                now.append(dataclasses.replace(task, guess=known[parent]))
            elif parent in pending:
                followers.setdefault(pending[parent].key, []).append(task)
            else:  # the root itself, or a parent that could not run
                now.append(task)
    # Deep pipelines first: they take longest, and the last tasks should be short ones.
    now.sort(key=lambda t: -t.head["pp"] * t.head["attn_dp"])
    return now, followers


def _execute(tasks: list[Task], finished: Callable[[str, dict[str, Any], dict[str, Any]], None], executor: str,
             workers: int | None, capacity: bool, attainment: float,
             followers: dict[str, list[Task]] | None = None) -> None:
    """Run the tasks; when a task that others follow finishes, they are queued with its capacity as their guess."""
    followers = followers or {}
    total = len(tasks) + sum(map(len, followers.values()))
    if not total:
        return
    workers = max(1, min(workers or os.cpu_count() or 1, total))
    queue = list(tasks)

    def done(task: Task, row: dict[str, Any]) -> None:
        queue.extend(dataclasses.replace(t, guess=row.get("capacity_rps") or None)
                     for t in followers.pop(task.key, []))
        finished(task.key, task.head, row)

    if executor == "ray":
        _execute_ray(queue, done, workers, capacity, attainment)
        return
    if workers == 1:
        while queue:
            task = queue.pop(0)
            done(task, evaluate(task.scenario, capacity, attainment, task.guess))
        return
    # spawn, not fork: polars' thread pool does not survive a fork (workers would hang).
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))
    pending: dict[Any, Task] = {}
    try:
        while queue or pending:
            while queue and len(pending) < 2 * workers:  # a few queued per worker; followers join as they can
                task = queue.pop(0)
                pending[pool.submit(evaluate, task.scenario, capacity, attainment, task.guess)] = task
            finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished_now:
                done(pending.pop(fut), fut.result())
    except BaseException:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def die_with_parent(parent: int) -> None:
    """A worker's first act: end when the search that started it ends, whatever ended it. A SIGKILLed parent runs
    no cleanup, and a worker mid-simulation would run on for minutes: Linux delivers SIGKILL to it when the parent
    dies (prctl PR_SET_PDEATHSIG); elsewhere, and for a parent that died before that call, a thread watches for
    the worker being re-parented."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _execute_ray(queue: list[Task], done: Callable[[Task, dict[str, Any]], None], workers: int, capacity: bool,
                 attainment: float) -> None:
    try:
        import ray
    except ImportError:
        raise FleetsimError("--executor ray needs Ray: pip install 'fleetsim[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        remote = ray.remote(evaluate)
        pending: dict[Any, Task] = {}
        while queue or pending:
            while queue:
                task = queue.pop(0)
                pending[remote.remote(task.scenario, capacity, attainment, task.guess)] = task
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                done(pending.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def _finish_table(rows: list[dict[str, Any]], objective: str, base: Scenario, capacity: bool) -> pl.DataFrame:
    for r in rows:
        if r["status"] != "ok":
            continue
        num_gpus = r["num_gpus"]
        # The offered load that is served within the SLOs, per GPU the plan uses: plans that serve everything on
        # as many GPUs tie, and latency decides (the makespan-based goodput_rps would rank them by the last
        # request's luck).
        r["goodput_per_gpu"] = (r.get("slo_attainment") or 0.0) * (r.get("offered_rps") or 0.0) / num_gpus
        r["output_tokens_per_s_per_gpu"] = (r.get("output_tokens_per_s") or 0.0) / num_gpus
        good_tokens = r.get("goodput_output_tokens_per_s") or 0.0
        # The cluster's hours (GPUs and, where priced, the electricity they drew) per million good output tokens.
        hourly = r.get("cluster_usd_per_hour") or r["hourly_usd"]
        r["cost_per_mtok_usd"] = (hourly / 3600.0) / good_tokens * 1e6 if good_tokens > 0 else math.inf
        misses = slo_misses(r, base.slo.ttft_s, base.slo.tpot_s, base.slo.jct_s, capacity, base.slo.e2el_s,
                            base.slo.itl_s)
        r["meets_slo"] = not misses
        r["slo_misses"] = "; ".join(m.text() for m in misses)
        r["slo_shortfall"] = max((m.ratio for m in misses), default=0.0)
        if "capacity_rps" in r:
            r["capacity_rps_per_gpu"] = r["capacity_rps"] / num_gpus
        if "capacity_agents" in r:
            r["capacity_agents_per_gpu"] = r["capacity_agents"] / num_gpus
    table = pl.DataFrame(rows, infer_schema_length=None)
    table = rank(table, objective)
    return pareto_front(table)


def _top_runs(base: Scenario, table: pl.DataFrame, capacity: bool) -> dict[str, pl.DataFrame]:
    """The per-request latencies of the two best simulated plans (at their capacity in capacity mode), for the
    report's CDFs: run again, as the winner's summary is."""
    out = {}
    for row in table.filter(pl.col("status") == "ok").head(2).iter_rows(named=True):
        sc = scenario_for(base, candidate_from_row(row), row["num_gpus"])
        if capacity and row.get("capacity_rps"):
            sc = sc.with_overrides(**{"workload.rate": row["capacity_rps"]})
        label = f"#{row['rank']} {row['plan']} (seqs {row['max_num_seqs']}, chunk {row['max_num_batched_tokens']})"
        out[label] = run(sc).requests
    return out


def _csv(table: pl.DataFrame) -> str:
    flat = table.select([c for c, t in table.schema.items() if not isinstance(t, (pl.List, pl.Struct))])
    return flat.write_csv()
