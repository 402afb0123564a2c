"""Agent jobs generated from an AgentSpec: each job's prompts, outputs and tool times drawn from its distributions,
job starts all at once (closed loop) or as a Poisson process (open loop)."""

from __future__ import annotations

import numpy as np

from sim.agents.program import AgentProgram, LLMCall, ToolCall
from sim.agents.spec import AgentSpec, tool_dist
from sim.core.arrivals import arrival_times
from sim.core.lengths import sample
from sim.core.rng import stream


def _tool_sample(spec: str, n: int, rng: np.random.Generator) -> np.ndarray:
    kind, p = tool_dist(spec)
    if kind == "fixed":
        return np.full(n, p[0])
    if kind == "uniform":
        return rng.uniform(p[0], p[1], n)
    return rng.lognormal(np.log(max(p[0], 1e-9)), p[1], n)


def generate_programs(spec: AgentSpec, seed: int) -> list[AgentProgram]:
    rng = stream(seed, "agents")
    starts = (arrival_times("poisson", spec.rate, spec.programs, stream(seed, "agent-arrivals"))
              if spec.rate is not None else np.zeros(spec.programs))
    out = []
    for pid in range(spec.programs):
        news = sample(spec.new_tokens, spec.turns, rng, "agents.new_tokens")
        news[0] = sample(spec.first_prompt, 1, rng, "agents.first_prompt")[0]
        outs = sample(spec.output_tokens, spec.turns, rng, "agents.output_tokens")
        tools = _tool_sample(spec.tool_time, (spec.turns - 1) * spec.parallel_tools, rng)
        steps: list[LLMCall | ToolCall] = []
        for turn in range(spec.turns):
            if turn:
                branch = tools[(turn - 1) * spec.parallel_tools:turn * spec.parallel_tools]
                steps.append(ToolCall(tuple(float(d) for d in branch)))
            steps.append(LLMCall(int(news[turn]), int(outs[turn])))
        out.append(AgentProgram(pid, tuple(steps), float(starts[pid])))
    return out
