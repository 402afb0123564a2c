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
    # Attention may run data-parallel over `attn_dp` ranks of TP each (APEX's attention/FFN split). Their FFN is
    # then split by TP over all tp x attn_dp GPUs, or, for MoE models, experts are spread whole over those GPUs
    # (ep = tp x attn_dp: DeepSeek-style DP attention + EP). ep = tp with attn_dp = 1: EP inside the TP group.
    ep: int = 1
    attn_dp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "replicas"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise FleetsimError(f"plan.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.tp_nodes, int) or self.tp_nodes < 0 or (self.tp_nodes and self.tp % self.tp_nodes):
            raise FleetsimError(f"plan.tp_nodes must divide tp ({self.tp}), got {self.tp_nodes!r}")
        for name in ("ep", "attn_dp"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FleetsimError(f"plan.{name} must be a positive integer, got {value!r}")
        if self.ep > 1 and self.ep != self.tp * self.attn_dp:
            raise FleetsimError(f"plan.ep must be 1 or tp x attn_dp = {self.tp * self.attn_dp} (experts spread over "
                                f"the replica's GPUs of one pipeline stage), got {self.ep}")


    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp * self.attn_dp

    @property
    def num_gpus(self) -> int:
        return self.gpus_per_replica * self.replicas

    def label(self) -> str:
        parts = [f"TP{self.tp}"]
        if self.attn_dp > 1:
            parts.append(f"DP{self.attn_dp}")
        if self.ep > 1:
            parts.append(f"EP{self.ep}")
        if self.pp > 1:
            parts.append(f"PP{self.pp}")
        return f"{self.replicas}x({','.join(parts)})"
