"""Token-length distributions, written as compact specs: 'fixed:512', 'uniform:100:2000', 'lognormal:1000:1.0'
(median, sigma), 'empirical' (resampled from the trace's own column)."""

from __future__ import annotations

import numpy as np

from sim.errors import FleetsimError

KINDS = ("fixed", "uniform", "lognormal", "empirical")


def parse(spec: str | int, field: str) -> tuple[str, list[float]]:
    if isinstance(spec, int) and not isinstance(spec, bool):
        return "fixed", [float(spec)]
    text = str(spec).strip()
    kind, *args = text.split(":")
    if kind.isdigit():
        return "fixed", [float(kind)]
    arity = {"fixed": 1, "uniform": 2, "lognormal": 2, "empirical": 0}
    if kind not in arity:
        raise FleetsimError(f"{field}: unknown distribution '{text}'; expected fixed:N, uniform:LOW:HIGH, "
                            f"lognormal:MEDIAN:SIGMA or empirical")
    if len(args) != arity[kind]:
        raise FleetsimError(f"{field}: '{text}' takes {arity[kind]} parameter(s)")
    try:
        values = [float(a) for a in args]
    except ValueError:
        raise FleetsimError(f"{field}: parameters of '{text}' must be numbers") from None
    if any(v <= 0 for v in values) or (kind == "uniform" and values[0] > values[1]):
        raise FleetsimError(f"{field}: parameters of '{text}' must be positive (and LOW <= HIGH)")
    return kind, values


def sample(spec: str | int, n: int, rng: np.random.Generator, field: str,
           empirical: np.ndarray | None = None, cap: int | None = None) -> np.ndarray:
    kind, p = parse(spec, field)
    if kind == "fixed":
        out = np.full(n, p[0])
    elif kind == "uniform":
        out = rng.integers(int(p[0]), int(p[1]) + 1, n)
    elif kind == "lognormal":
        out = rng.lognormal(np.log(p[0]), p[1], n)
    else:
        if empirical is None or len(empirical) == 0:
            raise FleetsimError(f"{field}: 'empirical' needs a trace to resample (set workload.trace)")
        out = rng.choice(empirical, n)
    out = np.maximum(1, np.rint(out)).astype(np.int64)
    return np.minimum(out, cap) if cap else out
