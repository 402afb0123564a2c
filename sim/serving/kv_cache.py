"""Paged KV-cache accounting with automatic prefix caching (block-hash reuse, LRU eviction of unreferenced blocks).

Blocks are counted, not named: the simulator needs how many are free, in use and cached, and which cached prefix
units a request can reuse. A prefix unit is the trace's hash block (e.g. Mooncake's 512 tokens); it holds
`unit_tokens / block_size` KV blocks and is reused or evicted whole.
"""

from __future__ import annotations

from collections import OrderedDict


class KVCache:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = enable_prefix_caching
        self.num_free = num_blocks  # neither referenced nor holding a cached prefix
        self.used = 0  # referenced by at least one running request
        self.cached: OrderedDict[int, int] = OrderedDict()  # unreferenced unit -> blocks, oldest first
        self.active: dict[int, list[int]] = {}  # referenced unit -> [refcount, blocks]
        self.peak_used = 0
        self.evicted_blocks = 0

    @property
    def available(self) -> int:
        """Blocks an allocation can obtain (free ones plus evictable cached ones)."""
        return self.num_blocks - self.used

    @property
    def num_cached(self) -> int:
        return self.num_blocks - self.num_free - self.used

    def allocate(self, n: int) -> None:
        if n <= 0:
            return
        if n > self.num_blocks - self.used:
            raise RuntimeError(f"KV allocation of {n} blocks exceeds the {self.num_blocks - self.used} available")
        while self.num_free < n:
            _, blocks = self.cached.popitem(last=False)
            self.num_free += blocks
            self.evicted_blocks += blocks
        self.num_free -= n
        self.used += n
        if self.used > self.peak_used:
            self.peak_used = self.used

    def release(self, private_blocks: int, keys: list[int]) -> None:
        self.num_free += private_blocks
        self.used -= private_blocks
        # Tail units first into the LRU order, so eviction eats a prefix from its end and keeps it reusable
        # (vLLM frees a request's blocks in reverse for the same reason).
        for key in reversed(keys):
            entry = self.active[key]
            entry[0] -= 1
            if entry[0] == 0:
                del self.active[key]
                self.cached[key] = entry[1]
                self.used -= entry[1]

    def match(self, keys: tuple[int, ...], max_units: int) -> int:
        """How many leading prefix units of `keys` are resident (in use or cached)."""
        if not self.prefix_caching:
            return 0
        n = 0
        for key in keys[:max_units]:
            if key in self.active or key in self.cached:
                n += 1
            else:
                break
        return n

    def acquire(self, keys: tuple[int, ...]) -> int:
        """Reference resident units; returns the blocks that moved from cached to in use."""
        moved = 0
        for key in keys:
            entry = self.active.get(key)
            if entry is not None:
                entry[0] += 1
            else:
                blocks = self.cached.pop(key)
                self.active[key] = [1, blocks]
                self.used += blocks
                moved += blocks
        if self.used > self.peak_used:
            self.peak_used = self.used
        return moved

    def register(self, key: int, blocks: int) -> bool:
        """A request finished computing a full unit in private blocks: make it reusable. False if another copy is
        already resident (the request then keeps its copy private)."""
        if not self.prefix_caching or key in self.active or key in self.cached:
            return False
        self.active[key] = [1, blocks]
        return True

    def pin(self, keys: tuple[int, ...] | list[int]) -> tuple[list[int], int]:
        """Hold the resident ones of `keys` in use (not evictable) for a paused agent job: (keys held, blocks)."""
        held, blocks = [], 0
        for key in keys:
            entry = self.active.get(key)
            if entry is not None:
                entry[0] += 1
            elif key in self.cached:
                entry = [1, self.cached.pop(key)]
                self.active[key] = entry
                self.used += entry[1]
            else:
                continue
            held.append(key)
            blocks += entry[1]
        if self.used > self.peak_used:
            self.peak_used = self.used
        return held, blocks

    def take(self, key: int) -> int:
        """Detach an in-use entry held by one request only; its blocks stay in use, owned by that request."""
        refcount, blocks = self.active.pop(key)
        assert refcount == 1, "a private entry has one holder"
        return blocks

    def cache_private(self, key: int, blocks: int) -> None:
        """Blocks a preempted request computed become one reusable (evictable) entry."""
        if blocks > 0:
            self.cached[key] = blocks
            self.used -= blocks

    def drop(self, key: int) -> None:
        """Free an unreferenced cached entry now (it can no longer be hit)."""
        blocks = self.cached.pop(key, 0)
        self.num_free += blocks

    def check(self) -> None:
        assert 0 <= self.used <= self.num_blocks, (self.used, self.num_blocks)
        assert self.num_free >= 0
        assert self.num_free + self.used + sum(self.cached.values()) == self.num_blocks
