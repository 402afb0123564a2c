"""How a workload becomes the canonical request table: a trace read, transformed and windowed, or traffic generated
at a rate, with what reading it did (notes) and how many requests the length cap clipped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from sim.core.arrivals import arrival_times
from sim.core.lengths import sample
from sim.core.rng import stream
from sim.errors import FleetsimError
from sim.workload.offered import at_rate, count_at_rate
from sim.workload.spec import WorkloadSpec
from sim.workload.table import validate, window
from sim.workload.traces import read_trace
from sim.workload.transform import Transform, apply, clip


@dataclass
class Prepared:
    """The request table to simulate, its prefix block size (0: no prefix hashes), what reading and transforming
    the trace did (notes), and how many rows the length cap clipped."""

    table: pl.DataFrame
    block_tokens: int = 0
    notes: list[str] = field(default_factory=list)
    clipped: int = 0


def _transform(spec: WorkloadSpec, duration_s: float | None, max_tokens: bool = True) -> Transform:
    return Transform(spec.start_s, duration_s, spec.rate_scale, spec.sample, spec.model_filter,
                     spec.max_tokens if max_tokens else None)


def build_requests(spec: WorkloadSpec, seed: int, max_len: int | None = None) -> tuple[pl.DataFrame, int]:
    """The request table to simulate and its prefix block size (0 when the trace carries no prefix hashes)."""
    p = prepare(spec, seed, max_len)
    return p.table, p.block_tokens


def prepare(spec: WorkloadSpec, seed: int, max_len: int | None = None) -> Prepared:
    kind = spec.arrival_kind
    loaded = read_trace(spec.trace, spec.format, spec.skip_bad_rows) if spec.trace else None
    trace = loaded.table if loaded is not None else None
    if kind == "trace":
        if loaded is None:
            raise FleetsimError("workload.arrival = 'trace' needs workload.trace")
        if loaded.fmt == "agent":
            raise FleetsimError(f"{spec.trace}: an agent trace; replay it as agent jobs (`fleetsim replay FILE` or "
                                f"--agent-trace)")
        if spec.rate is None:
            w = spec.window_s  # in simulated time: --rate-scale k makes it k times as long in the trace's time
            df, clipped = apply(trace, _transform(spec, w * spec.rate_scale if w is not None else None), seed)
            df = window(df, None, spec.num_requests)
        else:
            # Choose the requests first, then scale them to the rate: the run offers exactly `rate`, and a window
            # is cut in simulated time (sim/workload/offered.py).
            df, _ = apply(trace, _transform(spec, None, max_tokens=False), seed)
            wanted = count_at_rate(spec.rate, spec.num_requests, spec.window_s)
            if wanted is not None and wanted > df.height and spec.num_requests is None:
                loaded.notes.append(f"{spec.trace}: holds {df.height:,} requests, {(df.height - 1) / spec.rate:,.0f} s "
                                    f"at {spec.rate:g} req/s, shorter than the {spec.window_s:g} s window")
            df = at_rate(window(df, None, wanted), spec.rate)
            clipped = 0
            if spec.max_tokens is not None:
                df, clipped = clip(df, spec.max_tokens)
        return Prepared(df, loaded.block_tokens, loaded.notes, clipped)
    rate = spec.rate or 1.0
    ready = spec.concurrency is not None and spec.rate is None  # closed loop without a rate: all ready at once
    n = count_at_rate(rate, spec.num_requests, spec.window_s)
    if n is None:
        raise FleetsimError("workload: set num_requests or duration_s for generated arrivals")
    if ready and spec.num_requests is None:
        raise FleetsimError("workload.concurrency without a rate: set num_requests (how many requests to send)")
    rng_a, rng_l = stream(seed, "arrivals"), stream(seed, "lengths")
    times = np.zeros(n) if ready else at_rate(pl.DataFrame({"arrival_s": arrival_times(kind, rate, n, rng_a, spec.cv)}),
                                              rate)["arrival_s"].to_numpy()
    emp_in = trace["input_tokens"].to_numpy() if trace is not None else None
    emp_out = trace["output_tokens"].to_numpy() if trace is not None else None
    df = pl.DataFrame({
        "arrival_s": times,
        "input_tokens": sample(spec.input_len, n, rng_l, "workload.input_len", emp_in, max_len),
        "output_tokens": sample(spec.output_len, n, rng_l, "workload.output_len", emp_out, max_len),
    })
    df = validate(df, "generated workload")
    clipped = 0
    if spec.max_tokens is not None:
        df, clipped = clip(df, spec.max_tokens)
    return Prepared(df, clipped=clipped)
