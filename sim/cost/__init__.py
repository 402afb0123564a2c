from sim.cost.iteration import IterationCost

__all__ = ["IterationCost"]
