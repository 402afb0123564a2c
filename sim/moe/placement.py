"""Where each expert's weights live across the expert-parallel GPUs: contiguous EP, and EPLB's redundant experts.

A placement is, per MoE layer, the share of each expert's token copies that each GPU serves ([layers, experts,
gpus], rows summing to 1). Contiguous EP gives GPU g experts g*E/G .. (g+1)*E/G - 1. EPLB (DeepSeek's expert-
parallel load balancer, github.com/deepseek-ai/EPLB) adds R redundant copies of the experts with the most load per
copy, then packs the E+R copies onto the GPUs, E/G + R/G each, heaviest first onto the least-loaded GPU. Its
hierarchical mode first packs onto nodes, then onto the GPUs inside each node, so most traffic stays on NVLink.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.errors import FleetsimError


@dataclass(frozen=True)
class Placement:
    share: np.ndarray  # [layers, experts, gpus]
    name: str

    @property
    def gpus(self) -> int:
        return self.share.shape[2]

    def gpu_loads(self, counts: np.ndarray) -> np.ndarray:
        """Token copies each GPU computes, per layer: [layers, gpus]."""
        return np.einsum("le,leg->lg", counts, self.share)

    def experts_per_gpu(self) -> np.ndarray:
        """Expert weight copies each GPU holds, per layer: [layers, gpus]."""
        return (self.share > 0).sum(axis=1)


def contiguous(layers: int, experts: int, gpus: int) -> Placement:
    if experts % gpus:
        raise FleetsimError(f"ep={gpus} does not divide the {experts} experts")
    share = np.zeros((layers, experts, gpus))
    share[:, np.arange(experts), np.arange(experts) // (experts // gpus)] = 1.0
    return Placement(share, "contiguous")


def _pack(loads: np.ndarray, owners: np.ndarray, bins: int, per_bin: int) -> np.ndarray:
    """Greedy longest-processing-time packing of items (heaviest first) onto the least-loaded bin with a free
    slot, avoiding a bin that already holds a copy of the same expert. Returns each item's bin."""
    order = np.argsort(-loads, kind="stable")
    total = np.zeros(bins)
    used = np.zeros(bins, dtype=int)
    held: list[set[int]] = [set() for _ in range(bins)]
    where = np.empty(len(loads), dtype=int)
    for i in order:
        free = [b for b in range(bins) if used[b] < per_bin]
        fresh = [b for b in free if owners[i] not in held[b]] or free
        b = min(fresh, key=lambda b: (total[b], b))
        where[i] = b
        total[b] += loads[i]
        used[b] += 1
        held[b].add(int(owners[i]))
    return where


def eplb(load: np.ndarray, gpus: int, redundant: int, gpus_per_node: int | None = None) -> Placement:
    """EPLB from observed per-layer expert loads ([layers, experts]); hierarchical when `gpus_per_node` divides
    the GPUs into several nodes."""
    layers, experts = load.shape
    if (experts + redundant) % gpus:
        raise FleetsimError(f"eplb: experts + redundant ({experts} + {redundant}) must be a multiple of ep={gpus}")
    per_gpu = (experts + redundant) // gpus
    nodes = gpus // gpus_per_node if gpus_per_node and gpus % gpus_per_node == 0 else 1
    share = np.zeros((layers, experts, gpus))
    for layer in range(layers):
        w = load[layer].astype(float) + 1e-9  # never-seen experts still get one copy
        copies = np.ones(experts, dtype=int)
        for _ in range(redundant):
            copies[np.argmax(w / copies)] += 1
        owners = np.repeat(np.arange(experts), copies)
        item_load = w[owners] / copies[owners]
        if nodes > 1:
            node = _pack(item_load, owners, nodes, per_gpu * gpus_per_node)
            gpu = np.empty(len(owners), dtype=int)
            for n in range(nodes):
                mine = np.flatnonzero(node == n)
                gpu[mine] = n * gpus_per_node + _pack(item_load[mine], owners[mine], gpus_per_node, per_gpu)
        else:
            gpu = _pack(item_load, owners, gpus, per_gpu)
        np.add.at(share[layer], (owners, gpu), 1.0 / copies[owners])
    return Placement(share, f"eplb:{redundant}" + (":hierarchical" if nodes > 1 else ""))
