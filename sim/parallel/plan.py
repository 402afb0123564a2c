"""An execution plan: how many replicas (data parallel) and how each is split (tensor and pipeline parallel)."""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import FleetsimError


@dataclass(frozen=True, slots=True)
class Plan:
    tp: int = 1
    pp: int = 1
    replicas: int = 1
    tp_nodes: int = 0  # nodes one tensor-parallel group spans; 0: as few as fit (packed)

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "replicas"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise FleetsimError(f"plan.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.tp_nodes, int) or self.tp_nodes < 0 or (self.tp_nodes and self.tp % self.tp_nodes):
            raise FleetsimError(f"plan.tp_nodes must divide tp ({self.tp}), got {self.tp_nodes!r}")

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def num_gpus(self) -> int:
        return self.gpus_per_replica * self.replicas

    def label(self) -> str:
        return f"{self.replicas}x(TP{self.tp}" + (f",PP{self.pp})" if self.pp > 1 else ")")
