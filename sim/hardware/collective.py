"""Collective communication time: alpha-beta models fitted to NCCL measurements (see sim.cost.calibration).

Where the calibration has no entry for a group shape, the nearest measured intra-node group is used, with its
bandwidth scaled by the GPU's scale-up link relative to the calibrated GPU's; groups that span nodes are limited
by the scale-out fabric (hierarchical: intra-node reduce, inter-node ring over the NICs, intra-node broadcast).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from sim.errors import FleetsimError
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


@dataclass(frozen=True, slots=True)
class AllReduce:
    """All-reduce among `n` GPUs spread evenly over `nodes` nodes: a ring inside each node (reduce-scatter and
    all-gather), and when nodes > 1, a ring across nodes in which each GPU all-reduces its 1/(n/nodes) shard over
    its own NIC (NCCL's hierarchical algorithm on rail-optimised fabrics)."""

    n: int
    nodes: int
    intra: AlphaBeta
    inter: AlphaBeta | None = None

    def time(self, nbytes: float, eager: bool = False) -> float:
        """`eager` (outside a CUDA graph) changes nothing here: the NCCL fit was measured eagerly."""
        local = self.n // self.nodes
        t = self.intra.time(nbytes, 2.0 * (local - 1) / local) if local > 1 else 0.0
        if self.inter is not None:
            # NCCL picks the faster of a ring (bandwidth-optimal, 2(k-1) latency hops) and a double binary tree
            # (2 log2 k hops, but each shard crosses the fabric up and down: twice the bytes of a ring over k=2).
            shard, k = nbytes / local, self.nodes
            ring = self.inter.time(shard, 2.0 * (k - 1) / k)
            hops = 2 * math.ceil(math.log2(k))
            tree = self.inter.alpha_s / (2 * (k - 1)) * hops + 2.0 * shard / self.inter.bw_bytes_per_s
            t += min(ring, tree)
        return t


def allreduce_model(cluster: Cluster, calib: Calibration, calib_link_gbps: float, n: int,
                    nodes: int | None = None) -> AllReduce:
    """The all-reduce of a group of `n` GPUs over `nodes` nodes (default: packed into the fewest nodes)."""
    nodes = nodes or -(-n // cluster.node.gpus_per_node)
    local = n // nodes
    scale = cluster.scale_up_gbps / calib_link_gbps
    intra = _intra_node(calib, calib.allreduce, local, "busbw_gbps")
    intra = AlphaBeta(intra.alpha_s, intra.bw_bytes_per_s * scale)
    if nodes == 1:
        return AllReduce(n, 1, intra)
    # Cross-node NCCL timings exist only for A100 over HDR; the fabric card's latency and per-GPU bandwidth are used.
    fabric = AlphaBeta(2 * (nodes - 1) * cluster.fabric.latency_us * 1e-6, cluster.fabric.gbps_per_gpu * 1e9)
    return AllReduce(n, nodes, intra, fabric)


def sendrecv_model(cluster: Cluster, calib: Calibration, calib_link_gbps: float, across_nodes: bool) -> AlphaBeta:
    if across_nodes:
        return AlphaBeta(cluster.fabric.latency_us * 1e-6, cluster.fabric.gbps_per_gpu * 1e9)
    entry = calib.sendrecv.get("2x1")
    scale = cluster.scale_up_gbps / calib_link_gbps
    return AlphaBeta(entry["alpha_s"], entry["bw_gbps"] * 1e9 * scale)


def collective_model(kind: str, cluster: Cluster, calib: Calibration, calib_link_gbps: float, n: int,
                     nodes: int | None = None) -> Callable[[float], float]:
    """Seconds for one `kind` collective (all_reduce, all_gather, reduce_scatter, alltoall, sendrecv) of a message
    of `nbytes` among n GPUs over `nodes` nodes, from the fitted NCCL profiles of the calibrated GPU.

    Inside a node: alpha + factor(n) x bytes / bus bandwidth (scaled by the GPU's scale-up link). Across nodes the
    intra-node part runs on n/nodes GPUs and each GPU moves its share over its own NIC (the fabric card)."""
    table = (calib.nccl or {}).get(kind)
    if table is None:
        raise FleetsimError(f"no NCCL profile of '{kind}' for calibration '{calib.key}'")
    nodes = nodes or -(-n // cluster.node.gpus_per_node)
    local = max(1, n // nodes)
    scale = cluster.scale_up_gbps / calib_link_gbps
    intra = _intra_node(calib, table, local, "busbw_gbps")
    intra = AlphaBeta(intra.alpha_s, intra.bw_bytes_per_s * scale)
    factor = COLLECTIVE_FACTORS[kind]
    fabric = (AlphaBeta(2 * (nodes - 1) * cluster.fabric.latency_us * 1e-6, cluster.fabric.gbps_per_gpu * 1e9)
              if nodes > 1 else None)  # a single node needs no fabric card

    def time(nbytes: float) -> float:
        t = intra.time(nbytes, factor(local)) if local > 1 else 0.0
        if nodes > 1:
            t += fabric.time(nbytes / local, factor(nodes))
        return t

    return time


def alltoall_model(cluster: Cluster, calib: Calibration, calib_link_gbps: float, n: int,
                   top_k: int = 1) -> Callable[[float], float]:
    """All-to-all among n GPUs (expert parallelism): `time(bytes of token copies each GPU sends)`.

    Inside one node: the calibrated GPU's NCCL all-to-all profile, or its all-reduce fit where it has none. Across
    nodes: DeepEP's two-hop dispatch (DeepSeek-AI, DeepEP, 2025): a token crosses the fabric once per destination
    node, to the GPU of the same local rank, which forwards its copies over NVLink. The two hops overlap, so the
    slower one sets the time: RDMA carries the remote share deduplicated per node over each GPU's own NIC; NVLink
    carries the local copies plus the forwarded ones."""
    nodes = -(-n // cluster.node.gpus_per_node)
    if nodes > 1:
        return _two_hop(cluster, calib, calib_link_gbps, n, nodes, top_k)
    if (calib.nccl or {}).get("alltoall"):
        return collective_model("alltoall", cluster, calib, calib_link_gbps, n)  # bytes: each GPU's whole buffer
    ring = allreduce_model(cluster, calib, calib_link_gbps, n)
    return lambda nbytes: ring.time(nbytes / 2.0)  # an all-reduce moves 2(n-1)/n of its message, a2a (n-1)/n


def node_dedup(nodes: int, top_k: int) -> float:
    """Bytes a token sends across the fabric per copy bound to a remote node, when each destination node gets the
    token once: expected distinct remote nodes among k uniform choices over copies to remote nodes."""
    if nodes <= 1:
        return 1.0
    distinct_remote = (nodes - 1) * (1.0 - (1.0 - 1.0 / nodes) ** top_k)
    return distinct_remote / (top_k * (nodes - 1) / nodes)


def _two_hop(cluster: Cluster, calib: Calibration, calib_link_gbps: float, n: int, nodes: int,
             top_k: int) -> Callable[[float], float]:
    local = n // nodes
    table = (calib.nccl or {}).get("alltoall") or calib.allreduce
    intra = _intra_node(calib, table, max(local, 2), "busbw_gbps")
    nvlink = AlphaBeta(intra.alpha_s, intra.bw_bytes_per_s * cluster.scale_up_gbps / calib_link_gbps)
    rdma = AlphaBeta(cluster.fabric.latency_us * 1e-6, cluster.fabric.gbps_per_gpu * 1e9)
    remote = (nodes - 1) / nodes  # share of a GPU's copies bound to other nodes
    dedup = node_dedup(nodes, top_k)
    forwarded = (local - 1) / local  # of the copies arriving over RDMA, those for the receiver's node peers

    def time(nbytes: float) -> float:
        fabric = rdma.time(nbytes * remote * dedup)
        scale_up = nvlink.time(nbytes * ((local - 1) / n + remote * forwarded)) if local > 1 else 0.0
        return max(fabric, scale_up)

    return time


# Data each GPU moves relative to the message, for ring and pairwise algorithms (NCCL-tests' bus bandwidth).
COLLECTIVE_FACTORS: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2.0 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n,
    "sendrecv": lambda n: 1.0,
}
