"""KV retention policies for an agent job paused on its tools, and the cost/benefit rule that sizes a TTL.

Policies:
- evict: the call's blocks go back to the engine's prefix cache at once (vLLM's default); the next call reuses
  whatever LRU eviction has not taken meanwhile.
- pin:SECONDS: the blocks stay held (not evictable) until the next call starts or the TTL runs out.
- continuum: pinned with a TTL chosen per pause by the rule below, as Continuum proposes (Li et al., "Continuum:
  Efficient and Robust Multi-Turn LLM Agent Scheduling with KV Cache Time-to-Live", arXiv:2511.02230).
- offload: like evict on the GPU, but the blocks are also copied to host memory over PCIe; the next call reloads
  the part the GPU no longer holds before it is admitted, instead of computing it again.
- none: no reuse at all (prefix caching off).

The TTL rule (ours, after Continuum's utility argument). If the tool returns within the TTL τ the next call saves
`saving` seconds (the re-prefill of its context, plus the queueing a held job skips under program-level scheduling);
holding costs `hold_rate` seconds of other jobs' progress per second held. With the empirical distribution F of the
pauses seen so far, choose τ maximising  F(τ)·saving − hold_rate·E[min(T, τ)],  and do not pin when no τ gains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.errors import FleetsimError

if TYPE_CHECKING:
    import numpy as np

POLICIES = ("evict", "pin:SECONDS", "continuum", "offload", "none")


def retention(policy: str) -> tuple[str, float]:
    """Parse a KV retention policy into (kind, fixed TTL seconds)."""
    kind, _, arg = str(policy).partition(":")
    if kind == "pin":
        try:
            ttl = float(arg)
        except ValueError:
            ttl = -1.0
        if not ttl >= 0:
            raise FleetsimError(f"agents.kv_policy: pin needs a TTL in seconds, e.g. pin:30; got '{policy}'")
        return kind, ttl
    if kind in ("evict", "continuum", "offload", "none") and not arg:
        return kind, 0.0
    raise FleetsimError(f"agents.kv_policy: expected one of {', '.join(POLICIES)}, got '{policy}'")


class PauseHistory:
    """The most recent tool pauses, kept sorted with running sums for the TTL rule."""

    def __init__(self, window: int = 512) -> None:
        self.window = window
        self._recent: list[float] = []
        self._sorted: np.ndarray | None = None
        self._cum: np.ndarray | None = None

    def add(self, pause: float) -> None:
        self._recent.append(pause)
        if len(self._recent) > 2 * self.window:
            del self._recent[:-self.window]
        self._sorted = None

    def __len__(self) -> int:
        return min(len(self._recent), self.window)

    def best_ttl(self, saving: float, hold_rate: float) -> float:
        """The TTL maximising F(τ)·saving − hold_rate·E[min(T, τ)] over the observed pauses; 0 when nothing gains."""
        import numpy as np  # here, not at the top: parsing a policy (scenario checks, `--help`) needs no numpy

        if not self._recent or saving <= 0:
            return 0.0
        if self._sorted is None:
            self._sorted = np.sort(np.asarray(self._recent[-self.window:]))
            self._cum = np.cumsum(self._sorted)
        p, n = self._sorted, len(self._sorted)
        i = np.arange(1, n + 1)
        # τ = p[i-1]: the first i pauses return in time; the others are held for τ and then released.
        utility = i / n * saving - hold_rate * (self._cum + (n - i) * p) / n
        k = int(np.argmax(utility))
        return float(p[k]) if utility[k] > 0 else 0.0
