"""Agent programs: chains of LLM calls separated by tool calls, each program a SimPy process."""

from sim.agents.program import AgentProgram, Fork, LLMCall, ToolCall
from sim.agents.spec import AgentSpec

__all__ = ["AgentProgram", "AgentSpec", "Fork", "LLMCall", "ToolCall"]
