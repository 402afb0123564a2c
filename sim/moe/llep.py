"""LLEP, least-loaded expert parallelism (Nguyen et al., arXiv:2601.17111; github.com/SalesforceAIResearch/
LeastLoadedEP): per batch, when the busiest GPU's load exceeds λ times the mean, each expert's copies stay on its
own GPU up to a capacity of α times the mean load and the excess goes, in chunks of at least m copies, to the
least-loaded GPUs, which first receive that expert's weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.errors import FleetsimError


@dataclass(frozen=True, slots=True)
class LLEPConfig:
    alpha: float = 1.0  # capacity factor: a GPU takes up to alpha x the mean load before spilling
    min_chunk: int = 1024  # m: no spilled chunk is smaller (smaller excesses stay home)
    threshold: float = 1.3  # λ: LLEP acts only when max/mean load exceeds this

    def __post_init__(self) -> None:
        if not self.alpha >= 1.0 or self.min_chunk < 1 or not self.threshold >= 1.0:
            raise FleetsimError(f"llep: expected alpha >= 1, m >= 1 and lambda >= 1, got alpha={self.alpha}, "
                                f"m={self.min_chunk}, lambda={self.threshold}")


def assign(counts: np.ndarray, home: np.ndarray, gpus: int, cfg: LLEPConfig) -> tuple[np.ndarray, np.ndarray, bool]:
    """One layer of one batch: (copies per GPU, expert weight copies each GPU receives, whether LLEP acted)."""
    native = np.bincount(home, weights=counts, minlength=gpus)
    mean = counts.sum() / gpus
    received = np.zeros(gpus, dtype=int)
    if mean == 0 or native.max() <= cfg.threshold * mean:
        return native, received, False
    cap = cfg.alpha * mean
    load = np.zeros(gpus)
    for e in np.argsort(-counts, kind="stable"):
        rest = float(counts[e])
        if rest == 0:
            break
        g = home[e]
        take = min(rest, max(0.0, cap - load[g]))
        if rest - take < cfg.min_chunk:
            take = rest  # too little left to be worth moving the weights
        load[g] += take
        rest -= take
        while rest > 0:
            d = int(np.argmin(load))
            chunk = min(rest, max(cap - load[d], cfg.min_chunk))
            if rest - chunk < cfg.min_chunk:
                chunk = rest
            load[d] += chunk
            rest -= chunk
            if d != g:
                received[d] += 1
    return load, received, True
