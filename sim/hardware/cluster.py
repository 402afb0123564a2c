"""A homogeneous cluster: N GPUs of one type in nodes of a scale-up domain, joined by a scale-out fabric."""

from __future__ import annotations

from dataclasses import dataclass

from sim.hardware.specs import FabricSpec, GPUSpec, NodeSpec


@dataclass(frozen=True, slots=True)
class Cluster:
    gpu: GPUSpec
    node: NodeSpec
    fabric: FabricSpec
    num_gpus: int

    @property
    def num_nodes(self) -> int:
        return -(-self.num_gpus // self.node.gpus_per_node)

    @property
    def scale_up_gbps(self) -> float:
        """Per-direction bandwidth of one GPU inside its node: its scale-up link, or PCIe where the node has none."""
        return self.gpu.pcie_gbps if self.node.link == "pcie" else self.gpu.scale_up_gbps

    def spans_nodes(self, group_size: int) -> bool:
        """Whether a group of `group_size` GPUs placed contiguously must cross the scale-out fabric."""
        return group_size > self.node.gpus_per_node
