"""Generated agent workloads: how many jobs, how they arrive, and the shape of each (checked when made; light, as
the CLI reads its defaults for `--help`). sim/agents/generate.py draws the jobs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.agents.retention import retention
from sim.core.checks import number
from sim.core.lengths import parse
from sim.errors import FleetsimError


DEFAULT_AGENTS = 8


@dataclass(frozen=True, slots=True)
class AgentSpec:
    programs: int = 100  # jobs in the run
    # Closed loop: this many agents, each running jobs back to back (8 when neither this, rate nor trace is set).
    agents: int | None = None
    rate: float | None = None  # open loop instead: jobs per second (Poisson)
    turns: int = 10  # LLM calls per job
    first_prompt: str = "lognormal:4000:0.5"  # the job's first prompt (system prompt, task)
    new_tokens: str = "lognormal:500:1.0"  # tokens each later call adds (tool result, user message)
    output_tokens: str = "lognormal:200:0.8"
    tool_time: str = "lognormal:1.0:1.5"  # seconds per tool call (median 1 s, long tail)
    parallel_tools: int = 1  # branches per tool call (fan-out width); the job waits for the slowest
    # Sub-agents each job spawns after its first call and waits for (as a coding agent's task tool): each runs
    # subagent_turns calls of its own context, which starts from a new prompt (first_prompt's distribution); the
    # job then continues with their results as new tokens.
    subagents: int = 0
    subagent_turns: int = 3
    unit_tokens: int = 256  # granularity at which the job's context is hashed for prefix caching
    # What happens to a job's KV cache while it waits on a tool: evict (vLLM: freed into the prefix cache, reusable
    # until evicted), pin:SECONDS (held, not evictable, until the next call or the TTL), continuum (held for a TTL
    # chosen by cost and benefit from the pauses seen so far), offload (copied to host memory, reloaded over PCIe),
    # none (no reuse). See sim/agents/retention.py.
    kv_policy: str = "evict"
    # Replay jobs from an agent trace (a WEKA session file or a folder of them) instead of generating them; with
    # neither agents nor rate set, every session starts at once.
    trace: str | None = None

    def __post_init__(self) -> None:
        for name in ("programs", "turns", "parallel_tools", "unit_tokens", "subagent_turns"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FleetsimError(f"agents.{name}: expected a positive integer, got {value!r}")
        if not isinstance(self.subagents, int) or isinstance(self.subagents, bool) or self.subagents < 0:
            raise FleetsimError(f"agents.subagents: expected a non-negative integer, got {self.subagents!r}")
        if self.agents is not None and self.rate is not None:
            raise FleetsimError("agents: set one of agents (closed loop) or rate (open loop), not both")
        if self.trace is None and self.agents is None and self.rate is None:
            object.__setattr__(self, "agents", DEFAULT_AGENTS)
        if self.agents is not None and (not isinstance(self.agents, int) or self.agents < 1):
            raise FleetsimError(f"agents.agents: expected a positive integer, got {self.agents!r}")
        if self.rate is not None:
            number(self.rate, "agents.rate", low=1e-6, high=1e6, what="jobs/s from 1e-6 to 1e6")
        for name in ("first_prompt", "new_tokens", "output_tokens"):
            parse(getattr(self, name), f"agents.{name}")
        tool_dist(self.tool_time)
        retention(self.kv_policy)


def tool_dist(spec: str) -> tuple[str, list[float]]:
    """Tool durations in seconds: fixed:S, uniform:A:B, lognormal:MEDIAN:SIGMA (fractional values allowed)."""
    kind, *args = str(spec).split(":")
    arity = {"fixed": 1, "uniform": 2, "lognormal": 2}
    try:
        values = [float(a) for a in args]
    except ValueError:
        values = []
    if kind not in arity or len(values) != arity[kind] or any(not math.isfinite(v) or v < 0 for v in values) or (
            kind == "lognormal" and values[1] > 10) or any(v > 1e7 for v in values):
        raise FleetsimError(f"agents.tool_time: expected fixed:S, uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA in "
                            f"finite seconds (sigma at most 10), got '{spec}'")
    return kind, values
