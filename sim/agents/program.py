"""What an agent job is: LLM calls whose prompts grow with the job's context, and tool calls between them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One request: the job's context so far plus `new_tokens` (a tool result, a user turn) as the prompt.

    A call replayed from a trace gives its prompt length and prefix block ids instead (`prompt_tokens`, `keys`
    in units of `unit_tokens`)."""

    new_tokens: int
    output_tokens: int
    prompt_tokens: int | None = None
    keys: tuple[int, ...] | None = None
    unit_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A pause of the job: one duration per parallel branch (fan-out); the job resumes when the slowest returns.
    Client think time is a one-branch tool call."""

    durations: tuple[float, ...]

    @property
    def duration(self) -> float:
        return max(self.durations)


@dataclass(frozen=True, slots=True)
class Fork:
    """Sub-agents: chains of steps that run at the same time, each extending a context of its own; the job resumes
    when the last chain finishes (a coding agent waiting on the sub-agents it spawned)."""

    branches: tuple[tuple[LLMCall | ToolCall | Fork, ...], ...]


Step = LLMCall | ToolCall | Fork


def count_calls(steps: tuple[Step, ...]) -> int:
    return sum(1 if isinstance(s, LLMCall) else count_calls(sum(s.branches, ())) if isinstance(s, Fork) else 0
               for s in steps)


@dataclass(frozen=True, slots=True)
class AgentProgram:
    pid: int
    steps: tuple[Step, ...]
    arrival: float = 0.0  # open loop: when it starts; closed loop: ignored (an agent starts it when free)

    @property
    def llm_calls(self) -> int:
        return count_calls(self.steps)


def longest_call(programs: list[AgentProgram]) -> tuple[int, int]:
    """(longest prompt, longest prompt + output) over every call of the jobs, as the driver will submit them: a
    generated call's prompt is its chain's context so far plus its new tokens (each sub-agent chain starts empty)."""
    prompt_max, total_max = 0, 0

    def walk(steps: tuple[Step, ...]) -> None:
        nonlocal prompt_max, total_max
        context = 0
        for s in steps:
            if isinstance(s, Fork):
                for branch in s.branches:
                    walk(branch)
            elif isinstance(s, LLMCall):
                prompt = s.prompt_tokens if s.prompt_tokens is not None else context + s.new_tokens
                total = prompt + s.output_tokens
                prompt_max, total_max = max(prompt_max, prompt), max(total_max, total)
                context = total

    for prog in programs:
        walk(prog.steps)
    return prompt_max, total_max
