"""Runs agent programs against a fleet: one SimPy process per job, waiting on its LLM calls and tool pauses.

Each call's prompt is the job's whole context so far, hashed in units of `unit_tokens` so that the engine's prefix
cache can serve the next call from the blocks the previous one left (vLLM's default: when a call finishes its
blocks stay cached, evictable, until memory is needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import simpy

from sim.agents.program import AgentProgram, LLMCall, ToolCall
from sim.agents.spec import AgentSpec, retention
from sim.serving.request import REJECTED, Request

_KEY_STRIDE = 1 << 32  # a job's context units get keys pid * stride + unit: apart from traces' ids and other jobs
# Continuum-style retention: hold a paused job's KV for the 90th percentile of the tool pauses seen so far, unless
# the cache is already half in use (pinning more would start preempting running requests).
CONTINUUM_QUANTILE = 0.9
CONTINUUM_PIN_LIMIT = 0.5


class AgentDriver:
    """`unit_tokens` 0 turns prefix hashing off (the engine's prefix cache is disabled)."""

    def __init__(self, env: simpy.Environment, fleet, spec: AgentSpec, unit_tokens: int) -> None:  # noqa: ANN001
        self.env, self.fleet, self.spec = env, fleet, spec
        self.policy, self.fixed_ttl = retention(spec.kv_policy)
        self.unit = 0 if self.policy == "none" else unit_tokens
        self.requests: list[Request] = []
        self.jobs: list[dict] = []
        self.on_job_done: Callable[[], None] | None = None
        self.tool_seen: list[float] = []  # tool pauses observed so far (Continuum's TTL comes from them)
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
        env = self.env
        start = env.now
        context, turn, tool_s, failed, reprefill = 0, 0, 0.0, False, 0
        base = (prog.pid + 1) * _KEY_STRIDE
        calls = prog.llm_calls
        pin: list | None = None
        for step in prog.steps:
            if isinstance(step, ToolCall):
                t0 = env.now
                yield env.all_of([env.timeout(d) for d in step.durations])  # the join waits for the slowest
                tool_s += env.now - t0
                self.tool_seen.append(env.now - t0)
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
            r.program, r.turn, r.priority = prog.pid, turn, start
            r.done = env.event()
            self.requests.append(r)
            self.fleet.submit(r)
            yield r.done
            self._unpin(pin)
            pin = None
            if r.state == REJECTED:
                failed = True
                break
            reprefill += max(0, context - r.prefix_hit_tokens)  # earlier context computed again
            context = total
            turn += 1
            if keys and turn < calls:
                pin = self._pin(r, keys)
        self.jobs.append({"program": prog.pid, "start_s": start, "finish_s": env.now, "jct_s": env.now - start,
                          "turns": turn, "final_context_tokens": context, "tool_s": tool_s,
                          "reprefill_tokens": reprefill, "failed": failed})
        self._unpin(pin)
        if self.on_job_done:
            self.on_job_done()

    # ---- KV retention while a job waits on its tools ---------------------------------------------------------
    def _pin(self, r: Request, keys: tuple[int, ...]) -> list | None:
        if self.policy in ("evict", "none"):
            return None
        ttl = self.fixed_ttl
        replica = self.fleet.replicas[r.replica]
        kv = replica.kv
        if self.policy == "continuum":
            if not self.tool_seen:
                return None  # nothing observed yet to size a TTL from
            ttl = float(np.quantile(self.tool_seen[-500:], CONTINUUM_QUANTILE))
            if kv.used >= CONTINUUM_PIN_LIMIT * kv.num_blocks:
                return None  # pinning more would crowd out running requests
        held, blocks = kv.pin(keys)
        if not held:
            return None
        self.pins += 1
        pin = [replica, held, blocks, self.env.now, True]
        self.env.process(self._expire(pin, ttl))
        return pin

    def _expire(self, pin: list, ttl: float):  # noqa: ANN202  (SimPy process)
        yield self.env.timeout(ttl)
        self._unpin(pin)

    def _unpin(self, pin: list | None) -> None:
        if pin is None or not pin[4]:
            return
        replica, held, blocks, since, _ = pin
        pin[4] = False
        replica.kv.release(0, held)
        replica.memory_released()
        self.pinned_block_s += blocks * (self.env.now - since)
