"""One replica's engine: a SimPy process that repeats one step lifecycle, plan -> cost -> apply.

1. Plan: each of the replica's schedulers (one per attention rank and pipeline micro-batch, sim/serving/
   scheduler.py) decides its share of the step: prefill chunks, decodes, blocks allocated.
2. Cost: the shares form a step plan (sim/cost/step_plan.py) that the cost model prices (sim/cost/iteration.py).
3. Apply: once that time has passed, every scheduler applies its share: tokens computed and sampled, requests
   finished, decoders advanced.

Two optimisations of "apply" never change results (tests/test_fast_forward.py):
- Fast-forward: while nothing can change any scheduler's batch (no prefill, no admissible arrival, no completion,
  enough free blocks), K pure-decode steps are one SimPy event whose step times are one numpy vector; an arrival
  that could join interrupts the run at the end of the step in progress.
- Chaining: a step that ends before the next event anywhere in the simulation (env.peek()) and finishes no request
  is applied on the replica's own clock without a SimPy event; the clock is synchronised before anything others
  may observe (a completion, an interruptible decode run, going idle).

Policies act on a replica through its methods (enqueue, cached_prefix, pin/unpin, offload, reload, engine_load,
prefill_seconds), never through its fields: sim/agents/driver.py and sim/serving/router.py use nothing else.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from sim.cost.iteration import IterationCost
from sim.cost.step_plan import RankBatch, StepPlan
from sim.energy.work import rank_work
from sim.serving.engine_config import EngineConfig
from sim.serving.host_cache import HostKVCache
from sim.serving.kv_cache import KVCache
from sim.serving.request import Request
from sim.serving.scheduler import Scheduler

_IDLE = RankBatch()
WORK_FIELDS = ("busy_s", "steps", "tokens", "attention_pairs", "kv_tokens")


@dataclass(slots=True)
class Pin:
    """KV units held in one engine's cache for a paused agent job."""

    lane: Scheduler
    keys: list[int]
    blocks: int
    since: float
    held: bool = True


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """What a policy may know of the engine that served a request: its batch, its queue and its KV cache."""

    running: int
    waiting: int
    used_blocks: int
    num_blocks: int


class Replica:
    def __init__(self, env: simpy.Environment, index: int, cost: IterationCost, cfg: EngineConfig,
                 max_model_len: int, blocks_per_engine: int, first_uid: int = 0, attn_dp: int = 1, pp: int = 1,
                 on_finish: Callable[[Request], None] | None = None) -> None:
        self.env, self.index, self.cost, self.cfg = env, index, cost, cfg
        self.max_model_len = max_model_len
        self.on_finish = on_finish
        self.attn_dp, self.pp = attn_dp, pp
        # Micro-batch-major: lanes[i * attn_dp + r] is rank r of pipeline micro-batch i.
        self.lanes = [Scheduler(first_uid + i, KVCache(blocks_per_engine, cfg.block_size, cfg.enable_prefix_caching),
                                cfg, max_model_len, self._finished) for i in range(attn_dp * pp)]
        self.first_uid = first_uid
        self.steps = 0
        self.busy_s = 0.0
        # Typed arrays, not lists: one entry per step (13M in a 1M-request run) at 8 bytes instead of ~32.
        self.kv_times = array("d")
        self.kv_used = array("q")
        self.kv_blocks = blocks_per_engine * len(self.lanes)
        # Each step (or fast-forwarded run of steps) as WORK_FIELDS, flattened: what the power model prices
        # (sim/energy/account.py). Its entries line up with kv_times.
        self.work = array("d")
        self.events = 0
        self.clock = env.now  # the replica's own time: ahead of env.now while steps are chained
        self.observer: Callable[[Replica], None] | None = None  # called after every applied step (invariant tests)
        # Expert-parallel accounting (when the cost model has a routing profile): MoE seconds, token copies
        # received by the busiest GPU before and after the balancing policy, and tokens through the MoE layers.
        self.moe_s = 0.0
        self.moe_tokens = 0
        self.moe_busiest = 0.0
        self.moe_busiest_before = 0.0
        self._idle: simpy.Event | None = None
        self._segment = False  # inside a multi-step fast-forward segment (interruptible)
        self._interrupted = False
        self._reserved: dict[int, Scheduler] = {}
        self.process = env.process(self._run())

    # ---- what policies may ask and do --------------------------------------------------------------------------
    def enqueue(self, r: Request, prefer_cache: bool = False) -> None:
        """Queue an arrival on one of the replica's engines (rejected if longer than the engine's context)."""
        r.replica = self.index
        lane = self._lane_for(r, prefer_cache)
        r.lane = lane.uid
        if not lane.accepts(r):
            lane.reject(r, self.env.now)
            return
        head = lane.queue(r)
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.succeed()
        elif self._segment and not self._interrupted and head and lane.could_join():
            self._interrupted = True
            self.process.interrupt()

    def cached_prefix(self, keys: Sequence[int], max_units: int) -> int:
        """Leading prefix units of `keys` resident in the KV cache of one of the replica's engines (the most)."""
        return max(lane.kv.match(keys, max_units) for lane in self.lanes)

    def pin(self, r: Request, keys: Sequence[int]) -> Pin | None:
        """Hold (not evictable) the resident units of `keys` in the cache of the engine that served `r`."""
        lane = self._lane(r)
        held, blocks = lane.kv.pin(keys)
        return Pin(lane, held, blocks, self.env.now) if held else None

    def unpin(self, pin: Pin) -> float:
        """Let a pin go; returns the block-seconds it held. A replica waiting for memory tries again."""
        if not pin.held:
            return 0.0
        pin.held = False
        pin.lane.kv.release(0, pin.keys)
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.succeed()
        return pin.blocks * (self.env.now - pin.since)

    def engine_load(self, r: Request) -> EngineLoad:
        lane = self._lane(r)
        return EngineLoad(len(lane.running), len(lane.waiting), lane.kv.used, lane.kv.num_blocks)

    def prefill_seconds(self, tokens: int) -> float:
        """A lone prompt of `tokens` tokens on one engine, chunked by the token budget (no queueing, no decodes)."""
        step = self.cfg.max_num_batched_tokens
        return sum(self.cost.step_time([(min(step, tokens - done), done)], 0, 0) for done in range(0, tokens, step))

    def attach_host_caches(self, capacity_blocks: int, block_bytes_per_gpu: float, pcie_gbps: float) -> None:
        """CPU offloading: each engine gets a host KV cache over its GPUs' own PCIe links."""
        for lane in self.lanes:
            lane.host = HostKVCache(capacity_blocks, block_bytes_per_gpu, pcie_gbps)

    @property
    def hosts(self) -> list[HostKVCache]:
        return [lane.host for lane in self.lanes if lane.host is not None]

    def offload(self, r: Request, keys: Sequence[int]) -> float:
        """Copy a finished call's context to the host memory of the engine that served it; returns the seconds the
        copy takes (it overlaps the tool pause that follows)."""
        lane = self._lane(r)
        written = lane.host.store(keys, r.prefix_unit_tokens // lane.kv.block_size)
        return written * lane.host.s_per_block

    def reload(self, r: Request, prefer_cache: bool = False) -> float:
        """Choose the engine for a call about to be submitted; if its host copy holds more of the call's context
        than the GPU still caches, the call will bring the difference back over PCIe: returns those seconds (the
        caller waits them out before `enqueue`; the engine charges any units evicted meanwhile itself)."""
        lane = self._lane_for(r, prefer_cache)
        self._reserved[r.rid] = lane
        keys, unit = r.prefix_keys, r.prefix_unit_tokens
        if lane.host is None or not keys:
            return 0.0
        max_units = min(len(keys), (r.prompt - 1) // unit)
        on_host = lane.host.match(keys, max_units)
        on_gpu = lane.kv.match(keys, max_units)
        if on_host <= on_gpu:
            return 0.0
        r.host_units, r.host_paid = on_host, on_host - on_gpu
        return (on_host - on_gpu) * (unit // lane.kv.block_size) * lane.host.s_per_block

    def kv_peak_fraction(self) -> float:
        """The fullest engine's peak KV use."""
        return max(lane.kv.peak_used / lane.kv.num_blocks for lane in self.lanes)

    def decode_step_ends(self) -> list[np.ndarray]:
        """Each engine's decode step end times (requests index them by `Request.lane`)."""
        return [lane.decode_step_ends() for lane in self.lanes]

    # ---- lanes -------------------------------------------------------------------------------------------------
    def _lane(self, r: Request) -> Scheduler:
        return self.lanes[r.lane - self.first_uid]

    def _lane_for(self, r: Request, prefer_cache: bool) -> Scheduler:
        lanes = self.lanes
        if len(lanes) == 1:
            return lanes[0]
        if self._reserved:
            lane = self._reserved.pop(r.rid, None)
            if lane is not None:
                return lane
        a = self.attn_dp
        # vLLM's data-parallel load balancing picks the engine core with the lowest waiting x 4 + running
        # (vllm/v1/engine/core_client.py, DPLBAsyncMPClient.get_core_engine_for_request); an external router that
        # addresses each rank (--data-parallel-external-lb) may prefer the rank caching the request's prefix.
        scores = [0] * a
        for i, lane in enumerate(lanes):
            scores[i % a] += 4 * len(lane.waiting) + len(lane.running)
        hits = None
        if prefer_cache and r.prefix_keys:
            hits = [lane.kv.match(r.prefix_keys, len(r.prefix_keys)) for lane in lanes]
            rank = min(range(a), key=lambda g: (-max(hits[g::a]), scores[g], g))
        else:
            rank = min(range(a), key=lambda g: (scores[g], g))
        # Within a rank, a pipeline micro-batch as vLLM v0's virtual engines: the one with the fewest unfinished
        # requests (vllm/engine/llm_engine.py, add_request).
        return min(lanes[rank::a], key=lambda lane: (-(hits[lane.uid - self.first_uid] if hits else 0),
                                                     lane.unfinished, lane.uid))

    def _finished(self, r: Request) -> None:
        if self.on_finish:
            self.on_finish(r)

    # ---- the engine loop ---------------------------------------------------------------------------------------
    def _run(self):  # noqa: ANN202  (a SimPy process generator)
        env, cost, lanes = self.env, self.cost, self.lanes
        chain = self.cfg.fast_forward
        single = lanes[0] if len(lanes) == 1 else None  # one engine: the common case, kept free of list work
        track_moe = cost.expert_profile is not None
        self.clock = env.now
        while True:
            if single is not None:
                p = single.plan(self.clock)
                plans = [p]
                if p is None:
                    yield from self._sleep()  # empty, or waiting for memory held outside any request (agents' pins)
                    continue
                mixed = bool(p[0])
            else:
                plans = [lane.plan(self.clock) for lane in lanes]
                if all(p is None for p in plans):
                    yield from self._sleep()
                    continue
                mixed = any(p is not None and p[0] for p in plans)
            if not mixed:
                # Pure decode: every active engine decodes, none prefills.
                if single is not None:
                    active = plans
                    k_max = single.horizon() if (chain and p[2]) else 1
                else:
                    active = [lane for lane, p in zip(lanes, plans) if p is not None]
                    stable = all(p is None or p[2] for p in plans)
                    k_max = min(lane.horizon() for lane in active) if (chain and stable) else 1
                if k_max == 1:
                    if single is not None:
                        active = [single]
                        n, kv = single.n_dec, single.decode_kv_sum()
                        t = cost.decode_time(n, kv)
                        finishes = chain and single.decoder_finishes(single.dstep)
                    else:
                        ns, kvs = self._decode_shape(plans)
                        n, kv = sum(ns), sum(kvs)
                        t = cost.decode_time_lanes(ns, kvs)
                        finishes = chain and any(lane.decoder_finishes(lane.dstep) for lane in active)
                    end = self.clock + t
                    if not (chain and end < env.peek() and not finishes):
                        self.events += 1
                        yield env.timeout(end - env.now)
                        end = env.now
                    self.clock = end
                    self.steps += 1
                    self.busy_s += t
                    if track_moe:
                        self._account_moe([lane.n_dec if p else 0 for lane, p in zip(lanes, plans)], 1)
                    self.work.extend((t, 1.0, n, kv, kv))
                    for lane in active:
                        lane.apply_decode_run(1, None, end)
                else:
                    if self.clock > env.now:
                        yield env.timeout(self.clock - env.now)  # nothing fires before the clock (see above)
                    self.events += 1
                    yield from self._decode_run(k_max, plans, lanes if single is not None else active)
            else:
                if single is not None:
                    share, finishes = single.rank_batch(p[0], p[1])
                    t = cost.step_time(share.chunks, share.decodes, share.kv_sum, num_logits=share.logits)
                    shares = [share]
                    load = single.load_s
                    if load:
                        single.load_s = 0.0
                else:
                    shares, finishes = [], False
                    for lane, p in zip(lanes, plans):
                        if p is None:
                            shares.append(_IDLE)
                            continue
                        share, fin = lane.rank_batch(p[0], p[1])
                        shares.append(share)
                        finishes = finishes or fin
                    a = self.attn_dp
                    t = cost.plan_time(StepPlan([shares[i:i + a] for i in range(0, len(shares), a)]))
                    # Host-to-GPU loads of the admitted requests' offloaded context: each engine over its links.
                    load = max(lane.load_s for lane in lanes)
                    if load:
                        for lane in lanes:
                            lane.load_s = 0.0
                t += load
                end = self.clock + t
                if not (chain and end < env.peek() and not finishes):
                    self.events += 1
                    yield env.timeout(end - env.now)
                    end = env.now
                self.clock = end
                self.steps += 1
                self.busy_s += t
                if track_moe:
                    self._account_moe([s.tokens for s in shares], 1)
                tokens, pairs, kv = rank_work(shares[0]) if single is not None else (0, 0.0, 0)
                if single is None:
                    for s in shares:
                        a, b, c = rank_work(s)
                        tokens, pairs, kv = tokens + a, pairs + b, kv + c
                self.work.extend((t, 1.0, tokens, pairs, kv))
                if single is not None:
                    single.apply_mixed(p[0], p[1], end)
                else:
                    for lane, p in zip(lanes, plans):
                        if p is not None:
                            lane.apply_mixed(p[0], p[1], end)
            self.kv_times.append(self.clock)
            self.kv_used.append(single.kv.used if single is not None else sum(lane.kv.used for lane in lanes))
            if self.observer is not None:
                self.observer(self)

    def _decode_shape(self, plans: list) -> tuple[list[int], list[int]]:
        ns, kvs = [], []
        for lane, p in zip(self.lanes, plans):
            if p is None:
                ns.append(0)
                kvs.append(0)
            else:
                ns.append(lane.n_dec)
                kvs.append(lane.decode_kv_sum())
        return ns, kvs

    def _account_moe(self, tokens: list[int], k: int) -> None:
        """Add k steps whose engines hold `tokens` each to the expert-parallel accounting."""
        cost, a = self.cost, self.attn_dp
        profile = cost.expert_profile
        for i in range(0, len(tokens), a):
            group = tokens[i:i + a]
            total = sum(group)
            if total:
                self.moe_s += k * cost.moe_time(StepPlan([[RankBatch(decodes=n) for n in group]]))
                self.moe_tokens += k * total
                self.moe_busiest += k * profile.received(total)
                self.moe_busiest_before += k * profile.received_before(total)

    def _sleep(self):  # noqa: ANN202  (generator)
        """Synchronise the clock, then wait to be woken: by an arrival, or by memory let go."""
        env = self.env
        if self.clock > env.now:
            yield env.timeout(self.clock - env.now)
        self._idle = env.event()
        yield self._idle
        self.clock = env.now

    def _decode_run(self, k_max: int, plans: list, active: list[Scheduler]):  # noqa: ANN202  (generator)
        """Run up to k_max identical-shape decode steps as one event; an arrival that could join interrupts it at
        the end of the step in progress."""
        env = self.env
        now = env.now
        if len(self.lanes) == 1:
            lane = self.lanes[0]
            n, kv = lane.n_dec, lane.decode_kv_sum()
            ends = self.cost.decode_run_ends(n, kv, k_max, now)
        else:
            ns, kvs = self._decode_shape(plans)
            n, kv = sum(ns), sum(kvs)
            ends = self.cost.decode_run_ends_lanes(ns, kvs, k_max, now)
        k = k_max
        self._segment, self._interrupted = True, False
        try:
            yield env.timeout(ends[-1] - now)
        except simpy.Interrupt:
            k = min(bisect_left(ends, env.now) + 1, k_max)
            while ends[k - 1] - env.now > 1e-12:
                try:
                    yield env.timeout(ends[k - 1] - env.now)
                except simpy.Interrupt:
                    pass
        self._segment = False
        self.clock = env.now
        self.steps += k
        busy = float(ends[k - 1]) - now
        self.busy_s += busy
        kv_run = k * kv + n * k * (k - 1) // 2  # each step's KV sum grows by n
        self.work.extend((busy, float(k), n * k, kv_run, kv_run))
        if self.cost.expert_profile is not None:
            self._account_moe([lane.n_dec if p else 0 for lane, p in zip(self.lanes, plans)], k)
        for lane in active:
            lane.apply_decode_run(k, ends[:k], self.clock)
