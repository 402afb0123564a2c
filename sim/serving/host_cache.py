"""KV blocks offloaded to host memory (CPU offloading, as vLLM's offloading connector or LMCache do).

A replica's host cache holds copies of prefix units in CPU memory, evicted LRU when full. Copies travel over each
GPU's own PCIe link: every GPU of the replica moves its shard of a block at the same time, so a block costs
(its bytes on one GPU) / (one link's bandwidth). Writes overlap the tool pause that follows a call; reads happen
before the next call is admitted.
"""

from __future__ import annotations

from collections import OrderedDict

# Share of a PCIe link's peak that bulk KV copies reach. An assumption: pinned-memory cudaMemcpy on PCIe Gen4/Gen5
# x16 reaches about 80% of the link (e.g. ~25 of 32 GB/s on Gen4, NVIDIA's bandwidthTest sample); block-sized copies
# batched per layer do about as well.
PCIE_EFFICIENCY = 0.8


class HostKVCache:
    def __init__(self, capacity_blocks: int, block_bytes_per_gpu: float, pcie_gbps: float) -> None:
        self.capacity = capacity_blocks
        self.s_per_block = block_bytes_per_gpu / (pcie_gbps * 1e9 * PCIE_EFFICIENCY)
        self.units: OrderedDict[int, int] = OrderedDict()  # unit key -> blocks, least recently used first
        self.used = 0
        self.written_blocks = 0
        self.loaded_blocks = 0

    def store(self, keys: tuple[int, ...] | list[int], unit_blocks: int) -> int:
        """Copy the units not held yet (LRU eviction makes room); returns the blocks written. Tail units go in first,
        so eviction eats a prefix from its end and leaves the rest reusable."""
        written = 0
        for key in reversed(keys):
            if key in self.units:
                self.units.move_to_end(key)
                continue
            if unit_blocks > self.capacity:
                break
            while self.used + unit_blocks > self.capacity:
                _, blocks = self.units.popitem(last=False)
                self.used -= blocks
            self.units[key] = unit_blocks
            self.used += unit_blocks
            written += unit_blocks
        self.written_blocks += written
        return written

    def match(self, keys: tuple[int, ...], max_units: int) -> int:
        """How many leading units of `keys` the host holds."""
        n = 0
        for key in keys[:max_units]:
            if key not in self.units:
                break
            n += 1
        for key in reversed(keys[:n]):
            self.units.move_to_end(key)
        return n
