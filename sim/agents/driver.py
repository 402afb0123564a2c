"""Runs agent programs against a fleet: one SimPy process per job, waiting on its LLM calls and tool pauses.

Each call's prompt is the job's whole context so far, hashed in units of `unit_tokens` so that the engine's prefix
cache can serve the next call from the blocks the previous one left (vLLM's default: when a call finishes its
blocks stay cached, evictable, until memory is needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import simpy

from sim.agents.program import AgentProgram, LLMCall, ToolCall
from sim.agents.spec import AgentSpec
from sim.serving.request import REJECTED, Request

_KEY_STRIDE = 1 << 32  # a job's context units get keys pid * stride + unit: apart from traces' ids and other jobs


class AgentDriver:
    """`unit_tokens` 0 turns prefix hashing off (the engine's prefix cache is disabled)."""

    def __init__(self, env: simpy.Environment, fleet, spec: AgentSpec, unit_tokens: int) -> None:  # noqa: ANN001
        self.env, self.fleet, self.spec, self.unit = env, fleet, spec, unit_tokens
        self.requests: list[Request] = []
        self.jobs: list[dict] = []
        self.on_job_done: Callable[[], None] | None = None

    def start(self, programs: Sequence[AgentProgram]) -> None:
        """Closed loop: `spec.agents` agents run the jobs back to back; open loop: each job at its arrival."""
        if self.spec.agents is not None:
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
        for step in prog.steps:
            if isinstance(step, ToolCall):
                t0 = env.now
                yield env.all_of([env.timeout(d) for d in step.durations])  # the join waits for the slowest
                tool_s += env.now - t0
                continue
            assert isinstance(step, LLMCall)
            prompt = context + step.new_tokens
            total = prompt + step.output_tokens
            keys = tuple(range(base, base + total // self.unit)) if self.unit else None
            r = Request(len(self.requests), env.now, prompt, step.output_tokens, keys, self.unit)
            r.program, r.turn = prog.pid, turn
            r.done = env.event()
            self.requests.append(r)
            self.fleet.submit(r)
            yield r.done
            if r.state == REJECTED:
                failed = True
                break
            reprefill += max(0, context - r.prefix_hit_tokens)  # earlier context computed again
            context = total
            turn += 1
        self.jobs.append({"program": prog.pid, "start_s": start, "finish_s": env.now, "jct_s": env.now - start,
                          "turns": turn, "final_context_tokens": context, "tool_s": tool_s,
                          "reprefill_tokens": reprefill, "failed": failed})
        if self.on_job_done:
            self.on_job_done()
