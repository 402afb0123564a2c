"""Token-length distributions, written as compact specs: 'fixed:512', 'uniform:100:2000', 'lognormal:1000:1.0'
(median, sigma), 'empirical' (resampled from the trace's own column)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sim.core.checks import MAX_TOKENS
from sim.errors import FleetsimError

if TYPE_CHECKING:
    import numpy as np

KINDS = ("fixed", "uniform", "lognormal", "empirical")


def parse(spec: str | int, field: str) -> tuple[str, list[float]]:
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not 1 <= spec <= MAX_TOKENS:
            raise FleetsimError(f"{field}: expected 1 to {MAX_TOKENS:,} tokens, got {spec}")
        return "fixed", [float(spec)]
    if not isinstance(spec, str):
        raise FleetsimError(f"{field}: expected a length such as fixed:512 or lognormal:1000:1.0, got {spec!r}")
    text = str(spec).strip()
    kind, *args = text.split(":")
    if kind.isdigit():
        if not 1 <= int(kind) <= MAX_TOKENS:
            raise FleetsimError(f"{field}: expected 1 to {MAX_TOKENS:,} tokens, got {kind}")
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
    if any(not math.isfinite(v) or v <= 0 for v in values) or (kind == "uniform" and values[0] > values[1]):
        raise FleetsimError(f"{field}: parameters of '{text}' must be positive finite numbers (and LOW <= HIGH)")
    if kind in ("fixed", "uniform", "lognormal") and values[0 if kind != "uniform" else 1] > MAX_TOKENS or (
            kind == "lognormal" and values[1] > 10):
        raise FleetsimError(f"{field}: '{text}' asks for more than {MAX_TOKENS:,} tokens (or a sigma above 10)")
    return kind, values


def sample(spec: str | int, n: int, rng: np.random.Generator, field: str,
           empirical: np.ndarray | None = None, cap: int | None = None) -> np.ndarray:
    import numpy as np  # here, not at the top: parsing a spec (scenario checks, `--help`) needs no numpy

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
    out = np.clip(np.rint(out), 1, MAX_TOKENS).astype(np.int64)  # a lognormal's far tail stays a length
    return np.minimum(out, cap) if cap else out
