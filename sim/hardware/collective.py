"""Collective communication time: alpha-beta models fitted to NCCL measurements (see sim.cost.calibration).

Where the calibration has no entry for a group shape, the nearest measured intra-node group is used, with its
bandwidth scaled by the GPU's scale-up link relative to the calibrated GPU's; groups that span nodes are limited
by the scale-out fabric (hierarchical: intra-node reduce, inter-node ring over the NICs, intra-node broadcast).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.hardware.calibration import Calibration
from sim.hardware.cluster import Cluster


@dataclass(frozen=True, slots=True)
class AlphaBeta:
    alpha_s: float
    bw_bytes_per_s: float

    def time(self, nbytes: float, factor: float = 1.0) -> float:
        return self.alpha_s + factor * nbytes / self.bw_bytes_per_s


def _intra_node(calib: Calibration, table: dict[str, dict[str, float]], n: int, bw_key: str) -> AlphaBeta:
    measured = {int(k.split("x")[0]): v for k, v in table.items() if k.endswith("x1")}
    nearest = min(measured, key=lambda m: (abs(m - n), m))
    entry = measured[nearest]
    return AlphaBeta(entry["alpha_s"], entry[bw_key] * 1e9)


def allreduce_model(cluster: Cluster, calib: Calibration, calib_link_gbps: float, n: int) -> AlphaBeta:
    """Ring all-reduce among `n` GPUs placed contiguously; time(bytes, 2(n-1)/n) gives seconds."""
    scale = cluster.gpu.scale_up_gbps / calib_link_gbps
    intra = _intra_node(calib, calib.allreduce, min(n, cluster.node.gpus_per_node), "busbw_gbps")
    intra = AlphaBeta(intra.alpha_s, intra.bw_bytes_per_s * scale)
    if not cluster.spans_nodes(n):
        return intra
    fabric_bw = cluster.fabric.gbps_per_gpu * 1e9
    return AlphaBeta(intra.alpha_s + 2 * cluster.fabric.latency_us * 1e-6, min(intra.bw_bytes_per_s, fabric_bw))


def sendrecv_model(cluster: Cluster, calib: Calibration, calib_link_gbps: float, across_nodes: bool) -> AlphaBeta:
    if across_nodes:
        return AlphaBeta(cluster.fabric.latency_us * 1e-6, cluster.fabric.gbps_per_gpu * 1e9)
    entry = calib.sendrecv.get("2x1")
    scale = cluster.gpu.scale_up_gbps / calib_link_gbps
    return AlphaBeta(entry["alpha_s"], entry["bw_gbps"] * 1e9 * scale)
