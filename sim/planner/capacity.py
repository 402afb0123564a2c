"""A plan's capacity: the highest arrival rate whose SLO attainment stays at or above a target (for agent jobs: the
most concurrent agents whose p90 job completion time stays within its target).

Fast where it can be without changing the answer:
- the search starts at an analytical estimate of the plan's rate (its prefill cost per token and the decode step
  of the batch its KV cache holds), not at the scenario's rate, so that a few probes bracket the answer;
- a probe stops as soon as its attainment target is out of reach: more requests have already missed an SLO (a TTFT
  past its target without a first token, or a finished request over either target) than the target allows. Those
  requests miss whatever happens next, so the probe's verdict is the one the full run would give;
- the bisection stops when the bracket is within `tolerance` of its lower end.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sim.errors import FleetsimError
from sim.runner import Simulation, build, collect, execute, run
from sim.scenario import Scenario
from sim.serving.request import REJECTED, Request

TOLERANCE = 0.03  # the bisection's last bracket, relative to its lower end


class AttainmentWatch:
    """Counts requests that can no longer meet their SLOs, each once, in O(1) amortised per request."""

    def __init__(self, requests: list[Request], ttft_s: float, tpot_s: float, attainment: float,
                 e2el_s: float | None = None) -> None:
        self.requests = sorted(requests, key=lambda r: r.arrival)
        self.ttft_s, self.tpot_s, self.e2el_s = ttft_s, tpot_s, e2el_s
        self.allowed = math.floor((1.0 - attainment) * len(requests) + 1e-9)  # misses the target tolerates
        self.missed: set[int] = set()
        self.next = 0  # requests before it in arrival order have had their TTFT checked

    def finished(self, r: Request) -> None:
        if r.rid in self.missed:
            return
        late = r.state == REJECTED or r.first_token_time - r.arrival > self.ttft_s
        if not late and r.output > 1:
            late = (r.finish_time - r.first_token_time) / (r.output - 1) > self.tpot_s
        if not late and self.e2el_s is not None:
            late = r.finish_time - r.arrival > self.e2el_s
        if late:
            self.missed.add(r.rid)

    def out_of_reach(self, now: float) -> bool:
        reqs, limit = self.requests, now - self.ttft_s
        while self.next < len(reqs) and reqs[self.next].arrival < limit:
            r = reqs[self.next]
            if r.first_token_time < 0 or r.first_token_time - r.arrival > self.ttft_s:
                self.missed.add(r.rid)  # its TTFT already exceeds the target, whenever its first token comes
            self.next += 1
        return len(self.missed) > self.allowed


def sustains(scenario: Scenario, attainment: float) -> tuple[bool, Simulation | None]:
    """Whether the scenario's run reaches the attainment target, and the finished simulation (None when the probe
    stopped early because the target was out of reach). The watch's count is the summary's: every request is
    checked at its finish against the same TTFT and TPOT definitions."""
    sim: Simulation = build(scenario)
    slo = scenario.slo
    if slo.itl_s is not None:
        raise FleetsimError("slo.itl_s: capacity mode checks each request's TTFT, TPOT and E2EL as it finishes; a "
                            "longest-token-gap target is not supported there (drop --capacity or the ITL target)")
    watch = AttainmentWatch(sim.requests, slo.ttft_s, slo.tpot_s, attainment, slo.e2el_s)
    sim.fleet.on_finish(watch.finished)
    stopped = execute(sim, stop=watch.out_of_reach, stop_every_s=max(min(slo.ttft_s / 4, 1.0), 1e-3))
    if stopped:
        return False, None
    return len(watch.missed) <= watch.allowed, sim


def estimate(scenario: Scenario) -> float:
    """Requests/s the plan should sustain, to start the search near it (not a bound; the search checks it): each
    engine's time per mean request, its prompt at the cheapest prefill rate per token plus its output at the decode
    step time of the batch its KV cache holds (max_num_seqs or fewer), per sequence."""
    sim = build(scenario)
    reqs = sim.requests
    if not reqs:
        return 0.0
    prefill_pool, decode_pool = sim.pools[0], sim.pools[-1]  # the same pool unless disaggregated
    eng = scenario.engine
    budget = eng.max_num_batched_tokens
    prefill_token = min(prefill_pool.cost.step_time([(b, 0)], 0, 0, num_logits=1) / b
                        for b in {budget, max(1, budget // 2), max(1, budget // 4)})
    mean_prompt = sum(r.prompt for r in reqs) / len(reqs)
    mean_output = sum(max(r.output - 1, 0) for r in reqs) / len(reqs)
    footprint = mean_prompt + mean_output / 2  # a sequence's mean KV tokens over its decode
    kv_tokens = decode_pool.blocks_per_engine * eng.block_size
    batch = max(1, min(eng.max_num_seqs, int(kv_tokens / max(footprint, 1.0))))
    decode_token = decode_pool.cost.decode_time(batch, int(batch * footprint)) / batch
    # A pipeline's micro-batches share its stages: a replica's throughput is that of its attention ranks, not of
    # its pp x attn_dp engines.
    prefill_lanes = prefill_pool.engines / prefill_pool.plan.pp
    decode_lanes = decode_pool.engines / decode_pool.plan.pp
    if prefill_pool is decode_pool:
        return prefill_lanes / (mean_prompt * prefill_token + mean_output * decode_token)
    rates = [prefill_lanes / (mean_prompt * prefill_token)]
    if mean_output > 0:
        rates.append(decode_lanes / (mean_output * decode_token))
    return min(rates)


def capacity(scenario: Scenario, attainment: float, tolerance: float = TOLERANCE,
             guess: float | None = None) -> tuple[float, dict[str, Any]]:
    """Highest rate (req/s) with SLO attainment >= `attainment`, within `tolerance`: probes from `guess` (default:
    the analytical estimate) up or down in growing steps until a sustained rate and a failed one bracket the answer,
    then bisection. For agent jobs, the most concurrent agents within the JCT SLO instead."""
    if scenario.agents is not None:
        return max_agents(scenario)
    cache: dict[float, tuple[bool, Simulation | None]] = {}

    def probe(rate: float) -> bool:
        if rate not in cache:
            cache[rate] = sustains(scenario.with_overrides(**{"workload.rate": rate}), attainment)
        return cache[rate][0]

    step = tolerance  # a guess from a sibling plan is close: bracket it finely
    if guess is None or not guess > 0:
        guess = estimate(scenario.with_overrides(**{"workload.rate": scenario.workload.rate or 1.0}))
        step = 0.1
    if not (math.isfinite(guess) and guess > 0):
        guess = scenario.workload.rate or 1.0
    if probe(guess):
        lo, hi = guess, guess * (1 + step)
        while probe(hi):
            if hi > 1e6:
                return hi, _summary(scenario, hi, cache)
            step *= 2
            lo, hi = hi, hi * (1 + step)
    else:
        lo, hi = guess / (1 + step), guess
        while not probe(lo):
            if lo < guess / 1e4:
                return 0.0, _summary(scenario, lo, cache)
            step *= 2
            lo, hi = lo / (1 + step), lo
    while (hi - lo) > tolerance * lo:
        mid = (lo + hi) / 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return lo, _summary(scenario, lo, cache)


def _summary(scenario: Scenario, rate: float, cache: dict) -> dict[str, Any]:
    """The summary of the run at `rate` (run afresh when its probe stopped early)."""
    at = scenario.with_overrides(**{"workload.rate": rate})
    sim = cache.get(rate, (False, None))[1]
    return collect(at, sim, 0.0).summary if sim is not None else run(at).summary


def max_agents(scenario: Scenario) -> tuple[float, dict[str, Any]]:
    """Agent jobs: the most concurrent agents whose p90 job completion time stays within the JCT SLO."""
    target = scenario.slo.jct_s
    if target is None:
        raise FleetsimError("capacity for agent jobs needs a JCT target: set slo.jct_s (--slo-jct)")
    jobs = scenario.agents.programs
    cache: dict[int, dict[str, Any]] = {}

    def summary(n: int) -> dict[str, Any]:
        if n not in cache:
            agents = dataclasses.replace(scenario.agents, agents=n, rate=None)
            cache[n] = run(dataclasses.replace(scenario, agents=agents)).summary
        return cache[n]

    def ok(n: int) -> bool:
        s = summary(n)
        return s["num_jobs_failed"] == 0 and (s["jct_p90_s"] or math.inf) <= target

    if not ok(1):
        return 0.0, summary(1)
    lo, hi = 1, 2
    while hi <= jobs and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, jobs + 1)
    while hi - lo > 1:  # ok(lo), not ok(hi) (or hi beyond the number of jobs)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return float(lo), summary(lo)

