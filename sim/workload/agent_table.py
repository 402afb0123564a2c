"""An agent trace flattened into request rows, for `fleetsim trace inspect` (replay runs it as jobs instead).

Each LLM call is a row of its session. The trace records the tool pauses between calls but not how long the
calls took on the original servers, so a row's arrival_s is its session's tool time before it: a lower bound.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sim.agents.program import Fork, LLMCall, Step, ToolCall
from sim.agents.traces import read_agent_trace
from sim.workload.badrows import BadRows


def _walk(steps: tuple[Step, ...], t: float, context: int, rows: list, session: str) -> tuple[float, int]:
    for step in steps:
        if isinstance(step, ToolCall):
            t += step.duration
        elif isinstance(step, Fork):
            ends = [_walk(branch, t, 0, rows, session)[0] for branch in step.branches]
            t = max(ends, default=t)
        elif isinstance(step, LLMCall):
            prompt = step.prompt_tokens if step.prompt_tokens is not None else context + step.new_tokens
            rows.append((t, prompt, step.output_tokens, session))
            context = prompt + step.output_tokens
    return t, context


def read_agent_table(path: Path, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    programs, names, _ = read_agent_trace(path)
    rows: list[tuple[float, int, int, str]] = []
    for program in programs:
        _walk(program.steps, 0.0, 0, rows, names[program.pid] if program.pid < len(names) else str(program.pid))
    notes.append("agent trace: arrival_s counts only each session's tool pauses (the calls' own time is not "
                 "recorded); `fleetsim replay` runs the sessions as agent jobs")
    # All sessions start at 0 here, so file order is not time order; sorted now, as that is no finding about the file.
    return pl.DataFrame(rows, schema={"arrival_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64,
                                      "session_id": pl.String}, orient="row").sort("arrival_s", maintain_order=True)
