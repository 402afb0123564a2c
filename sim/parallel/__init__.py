from sim.parallel.memory import MemoryBudget, memory_budget
from sim.parallel.plan import Plan

__all__ = ["MemoryBudget", "Plan", "memory_budget"]
