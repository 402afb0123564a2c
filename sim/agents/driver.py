"""Runs agent programs against a fleet: one SimPy process per job, waiting on its LLM calls and tool pauses.

Each call's prompt is the job's whole context so far, hashed in units of `unit_tokens` so that the engine's prefix
cache can serve the next call from the blocks the previous one left (vLLM's default: when a call finishes its
blocks stay cached, evictable, until memory is needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import simpy

from sim.agents.program import AgentProgram, Fork, LLMCall, ToolCall, count_calls
from sim.agents.retention import PauseHistory, retention
from sim.agents.spec import AgentSpec
from sim.serving.request import REJECTED, Request

_KEY_STRIDE = 1 << 48  # a job's context units get keys pid * stride + unit: apart from traces' ids and other jobs
# Continuum-style pins never hold more than this share of a replica's KV blocks: running requests keep room to grow
# (past it, pins would start preempting them, which costs more than any re-prefill they save).
CONTINUUM_PIN_LIMIT = 0.8
_QUEUE_EMA = 0.05  # weight of the latest call in the running mean of queueing delay
_CHAIN_STRIDE = 1 << 36  # each sub-agent chain of a job: a key range apart from the others' (traces' ids stay below)


class _Job:
    """What one job's chains add up while it runs."""

    __slots__ = ("start", "base", "turns", "tool_s", "reprefill", "failed", "chains", "pinned_block_s")

    def __init__(self, start: float, base: int) -> None:
        self.start, self.base = start, base  # base: the first prefix key of the job's key range
        self.turns, self.tool_s, self.reprefill, self.failed, self.chains = 0, 0.0, 0, False, 0
        self.pinned_block_s = 0.0  # KV blocks x seconds held for the job while its tools ran


class AgentDriver:
    """`unit_tokens` 0 turns prefix hashing off (the engine's prefix cache is disabled). `program_scheduling`: the
    engines order their queues by job (engine.scheduling = program).

    The driver acts on the serving side only through Fleet (submit, route, submit_to, replica) and Replica (pin,
    unpin, offload, reload, engine_load, prefill_seconds) methods; it never reads their fields."""

    def __init__(self, env: simpy.Environment, fleet, spec: AgentSpec, unit_tokens: int,  # noqa: ANN001
                 block_size: int = 16, program_scheduling: bool = False) -> None:
        self.env, self.fleet, self.spec = env, fleet, spec
        self.block_size = block_size
        self.program_scheduling = program_scheduling
        self.policy, self.fixed_ttl = retention(spec.kv_policy)
        self.unit = 0 if self.policy == "none" else unit_tokens
        self.requests: list[Request] = []
        self.jobs: list[dict] = []
        self.on_job_done: Callable[[], None] | None = None
        self.pauses = PauseHistory()  # tool pauses observed so far (Continuum's TTL comes from them)
        self.queue_s = 0.0  # running mean of the calls' queueing delay (what a held job's next call may skip)
        self.pinned_blocks: dict[int, int] = {}  # engine (Request.lane) -> blocks its pins hold now
        self._prefill_memo: dict[tuple[int, int], float] = {}
        self.pinned_block_s = 0.0
        self.pins = 0
        self.names: list[str] = []  # trace replay: each job's session name
        self.clipped = 0  # trace replay: requests clipped to the model's context

    def start(self, programs: Sequence[AgentProgram]) -> None:
        """Closed loop: `spec.agents` agents run the jobs back to back; open loop: each job at its arrival."""
        if self.spec.agents is not None:  # closed loop
            queue = list(programs)
            for _ in range(min(self.spec.agents, len(queue))):
                self.env.process(self._agent(queue))
        else:
            for prog in programs:
                self.env.process(self._delayed(prog))

    def _agent(self, queue: list[AgentProgram]):  # noqa: ANN202  (SimPy process)
        while queue:
            yield from self._run(queue.pop(0))

    def _delayed(self, prog: AgentProgram):  # noqa: ANN202
        if prog.arrival > self.env.now:
            yield self.env.timeout(prog.arrival - self.env.now)
        yield from self._run(prog)

    def _run(self, prog: AgentProgram):  # noqa: ANN202
        start = self.env.now
        job = _Job(start, (prog.pid + 1) * _KEY_STRIDE)
        context = yield from self._chain(job, prog, prog.steps, job.base)
        self.jobs.append({"program": prog.pid, "start_s": start, "finish_s": self.env.now,
                          "jct_s": self.env.now - start, "turns": job.turns, "final_context_tokens": context,
                          "tool_s": job.tool_s, "reprefill_tokens": job.reprefill, "failed": job.failed,
                          "pinned_block_s": job.pinned_block_s})
        if self.on_job_done:
            self.on_job_done()

    def _chain(self, job: _Job, prog: AgentProgram, steps: tuple, base: int):  # noqa: ANN202  (generator)
        """Run one context's steps in order (the job's main agent, or a sub-agent); returns its final context."""
        env = self.env
        context = 0
        calls = count_calls(steps)
        done_calls = 0
        pin: tuple | None = None
        host_ready = 0.0  # when this context's host copy (offload policy) is complete
        for step in steps:
            if job.failed:
                break
            if isinstance(step, ToolCall):
                t0 = env.now
                yield env.all_of([env.timeout(d) for d in step.durations])  # the join waits for the slowest
                job.tool_s += env.now - t0
                self.pauses.add(env.now - t0)
                continue
            if isinstance(step, Fork):
                subs = []
                for branch in step.branches:
                    job.chains += 1
                    subs.append(env.process(self._chain(job, prog, branch, job.base + job.chains * _CHAIN_STRIDE)))
                yield env.all_of(subs)
                continue
            assert isinstance(step, LLMCall)
            if step.prompt_tokens is not None:  # replayed from a trace: its own lengths and block ids
                prompt, total = step.prompt_tokens, step.prompt_tokens + step.output_tokens
                unit = step.unit_tokens if self.unit else 0
                keys = tuple(base + k for k in step.keys) if (unit and step.keys) else None
            else:
                prompt = context + step.new_tokens
                total = prompt + step.output_tokens
                unit = self.unit
                keys = tuple(range(base, base + total // unit)) if unit else None
            r = Request(len(self.requests), env.now, prompt, step.output_tokens, keys, unit)
            r.program, r.turn, r.priority = prog.pid, job.turns, job.start
            r.done = env.event()
            self.requests.append(r)
            if self.policy == "offload" and keys:
                yield from self._reload_and_submit(r, host_ready)
            else:
                self.fleet.submit(r)
            yield r.done
            self._unpin(pin)
            pin = None
            if r.state == REJECTED:
                job.failed = True
                break
            self.queue_s += _QUEUE_EMA * (r.first_scheduled - r.arrival - self.queue_s)
            job.reprefill += max(0, context - r.prefix_hit_tokens)  # earlier context computed again
            context = total
            job.turns += 1
            done_calls += 1
            if keys and done_calls < calls:
                if self.policy == "offload":
                    host_ready = self._offload(r, keys)
                else:
                    pin = self._pin(r, keys, job)
        self._unpin(pin)
        return context

    # ---- KV retention while a job waits on its tools ---------------------------------------------------------
    def _pin(self, r: Request, keys: tuple[int, ...], job: _Job | None = None) -> tuple | None:
        if self.policy in ("evict", "none", "offload"):
            return None
        ttl = self.fixed_ttl
        replica = self.fleet.replica(r.replica)
        load = replica.engine_load(r)
        pinned = self.pinned_blocks.get(r.lane, 0)
        if self.policy == "continuum":
            blocks = len(keys) * self._unit_blocks(r)
            if pinned + blocks > CONTINUUM_PIN_LIMIT * load.num_blocks:
                return None
            ttl = self.pauses.best_ttl(self._saving(replica, r, len(keys) * r.prefix_unit_tokens),
                                       self._hold_rate(load, blocks, pinned))
            if ttl <= 0:
                return None
            ttl *= 1 + 1e-9  # a pause exactly as long as the TTL still finds its KV
        pin = replica.pin(r, keys)
        if pin is None:
            return None
        self.pins += 1
        self.pinned_blocks[r.lane] = pinned + pin.blocks
        handle = (replica, pin, r.lane, job)
        self.env.process(self._expire(handle, ttl))
        return handle

    def _unit_blocks(self, r: Request) -> int:
        """KV blocks of one prefix unit of the call's context."""
        return r.prefix_unit_tokens // self.block_size

    def _saving(self, replica, r: Request, tokens: int) -> float:  # noqa: ANN001
        """Job-seconds a held context saves: its re-prefill delays the call itself and every request whose steps it
        joins (chunked prefill shares steps with the running decodes); under program-level scheduling, where a held
        job's call is admitted without waiting for memory, the call also skips the queueing delay calls now see."""
        key = (r.replica, tokens)
        t = self._prefill_memo.get(key)
        if t is None:
            t = replica.prefill_seconds(tokens)
            self._prefill_memo[key] = t
        return t * (1 + replica.engine_load(r).running) + (self.queue_s if self.program_scheduling else 0.0)

    @staticmethod
    def _hold_rate(load, blocks: int, pinned: int) -> float:  # noqa: ANN001
        """Other jobs' seconds lost per second the blocks are held. When memory binds (calls wait), the blocks would
        otherwise hold about blocks / (blocks per running request) running requests; with memory to spare, holding
        costs in proportion to how full the cache is."""
        pressure = 1.0 if load.waiting else load.used_blocks / load.num_blocks
        running = load.running
        used = load.used_blocks
        per_request = (used - pinned) / running if running and used > pinned else blocks
        return pressure * blocks / max(per_request, 1.0)

    # ---- CPU offloading ---------------------------------------------------------------------------------------
    def _offload(self, r: Request, keys: tuple[int, ...]) -> float:
        """Copy the finished call's context to its engine's host memory; returns when the copy is complete."""
        return self.env.now + self.fleet.replica(r.replica).offload(r, keys)

    def _reload_and_submit(self, r: Request, host_ready: float):  # noqa: ANN202  (generator)
        """Route the call; if the host holds more of its context than the GPU still caches, load the difference over
        PCIe (after the offload copy completes) before the call joins the queue."""
        replica = self.fleet.route(r)
        load = replica.reload(r, self.fleet.prefer_cache)
        if load:
            yield self.env.timeout(max(0.0, host_ready - self.env.now) + load)
        self.fleet.submit_to(r, replica)

    def _expire(self, handle: tuple, ttl: float):  # noqa: ANN202  (SimPy process)
        yield self.env.timeout(ttl)
        self._unpin(handle)

    def _unpin(self, handle: tuple | None) -> None:
        if handle is None:
            return
        replica, pin, lane, job = handle
        if not pin.held:
            return
        self.pinned_blocks[lane] -= pin.blocks
        held = replica.unpin(pin)
        self.pinned_block_s += held
        if job is not None:
            job.pinned_block_s += held
