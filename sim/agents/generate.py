"""Agent jobs generated from an AgentSpec: each job's prompts, outputs and tool times drawn from its distributions,
job starts all at once (closed loop) or as a Poisson process (open loop)."""

from __future__ import annotations

import numpy as np

from sim.agents.program import AgentProgram, Fork, LLMCall, ToolCall
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
        steps: list[LLMCall | ToolCall | Fork] = []
        for turn in range(spec.turns):
            if turn:
                branch = tools[(turn - 1) * spec.parallel_tools:turn * spec.parallel_tools]
                steps.append(ToolCall(tuple(float(d) for d in branch)))
            steps.append(LLMCall(int(news[turn]), int(outs[turn])))
            if turn == 0 and spec.subagents:
                steps.append(Fork(tuple(_subagent(spec, rng) for _ in range(spec.subagents))))
        out.append(AgentProgram(pid, tuple(steps), float(starts[pid])))
    return out


def _subagent(spec: AgentSpec, rng: np.random.Generator) -> tuple[LLMCall | ToolCall, ...]:
    """One sub-agent's chain: subagent_turns calls of its own context (a fresh task prompt, then new tokens per
    call) with tool pauses between, drawn from the job's distributions."""
    n = spec.subagent_turns
    news = sample(spec.new_tokens, n, rng, "agents.new_tokens")
    news[0] = sample(spec.first_prompt, 1, rng, "agents.first_prompt")[0]
    outs = sample(spec.output_tokens, n, rng, "agents.output_tokens")
    tools = _tool_sample(spec.tool_time, n - 1, rng)
    chain: list[LLMCall | ToolCall] = []
    for turn in range(n):
        if turn:
            chain.append(ToolCall((float(tools[turn - 1]),)))
        chain.append(LLMCall(int(news[turn]), int(outs[turn])))
    return tuple(chain)
