"""Arrival processes: Poisson, and gamma renewal (bursty when its coefficient of variation exceeds 1)."""

from __future__ import annotations

import numpy as np

from sim.errors import FleetsimError

ARRIVALS = ("poisson", "gamma")


def arrival_times(kind: str, rate: float, n: int, rng: np.random.Generator, cv: float = 1.0) -> np.ndarray:
    """`n` arrival times (s) starting at 0 with mean rate `rate` req/s."""
    if not rate > 0:
        raise FleetsimError(f"workload.rate: expected a positive rate in requests/s, got {rate!r}")
    if kind == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    elif kind == "gamma":
        if not cv > 0:
            raise FleetsimError(f"workload.cv: expected a positive coefficient of variation, got {cv!r}")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), n)
    else:
        raise FleetsimError(f"workload.arrival: expected one of trace, {', '.join(ARRIVALS)}, got '{kind}'")
    times = np.cumsum(gaps)
    return times - times[0]
