"""What traffic to simulate: the workload a scenario names, checked when it is made. Light on purpose (no numpy or
polars): the CLI reads its defaults for `--help`; sim/workload/build.py turns it into the request table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sim.core.checks import number
from sim.core.lengths import parse
from sim.errors import FleetsimError
from sim.workload.shipped import DEFAULT_WINDOW_S, SHIPPED
from sim.workload.transform import Transform


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    trace: str | None = "azure-conv"  # shipped name or path; None for synthetic traffic
    format: str = "auto"
    # "trace" (the trace's timestamps), "poisson" or "gamma"; default: the trace's, unless prompt or output lengths
    # are set (a generated workload, as `vllm bench serve --dataset-name random`)
    arrival: str | None = None
    rate: float | None = None  # req/s; with arrival="trace" the trace is time-scaled to this mean rate
    cv: float = 1.0  # gamma arrivals: coefficient of variation of inter-arrival gaps
    num_requests: int | None = None
    # Window of arrivals in seconds of simulated time (after rescaling to `rate`). None: none when num_requests is
    # set or the trace is a user's file (replayed whole); else 600 s (the shipped traces, generated traffic).
    duration_s: float | None = None
    input_len: str = "empirical"  # used when arrivals are generated: fixed:N, uniform:A:B, lognormal:M:S, empirical
    output_len: str = "empirical"
    # Replayed traces (sim/workload/transform.py): where the window starts, rate scaling, sampling, a model filter,
    # and whether malformed rows are skipped (counted) instead of failing the run. The length cap (prompt + output,
    # the output keeping at most half) applies to generated traffic too.
    start_s: float = 0.0
    rate_scale: float = 1.0
    sample: float = 1.0
    model_filter: str | None = None
    max_tokens: int | None = None
    skip_bad_rows: bool = False
    # Closed loop, as `vllm bench serve --max-concurrency N`: at most N requests in flight; each is sent at its
    # arrival time or when a slot frees, whichever is later (without a rate, all are ready at once).
    concurrency: int | None = None

    def __post_init__(self) -> None:
        for name in ("trace", "arrival", "model_filter"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, Path)):
                raise FleetsimError(f"workload.{name}: expected a name or a path, got {value!r}")
        if not isinstance(self.format, str):
            raise FleetsimError(f"workload.format: expected a format name, got {self.format!r}")
        if not isinstance(self.skip_bad_rows, bool):
            raise FleetsimError(f"workload.skip_bad_rows: expected true or false, got {self.skip_bad_rows!r}")
        if self.rate is not None:
            number(self.rate, "workload.rate", low=1e-6, high=1e7,
                   what="requests/s from 1e-6 to 1e7")
        if self.num_requests is not None and (not isinstance(self.num_requests, int) or self.num_requests < 1):
            raise FleetsimError(f"workload.num_requests: expected a positive integer, got {self.num_requests!r}")
        if self.duration_s is not None:
            number(self.duration_s, "workload.duration_s", low=0.0, low_open=True, allow_inf=True,
                   what="a positive number of seconds (inf: the whole trace)")
        if self.concurrency is not None and (not isinstance(self.concurrency, int) or isinstance(self.concurrency, bool)
                                             or self.concurrency < 1):
            raise FleetsimError(f"workload.concurrency: expected a positive integer, got {self.concurrency!r}")
        parse(self.input_len, "workload.input_len")
        parse(self.output_len, "workload.output_len")
        if not (isinstance(self.cv, (int, float)) and math.isfinite(self.cv) and self.cv > 0):
            raise FleetsimError(f"workload.cv: expected a positive, finite coefficient of variation, got {self.cv!r}")
        if self.cv != 1.0 and self.arrival_kind != "gamma":
            raise FleetsimError(f"workload.cv: sets the burstiness of gamma arrivals; these arrivals are "
                                f"{self.arrival_kind} (add arrival = gamma)")
        if self.arrival == "trace" and self._lengths_set:
            raise FleetsimError("workload.input_len/output_len: a replayed trace keeps its own lengths; drop them, "
                                "or generate arrivals (arrival = poisson or gamma) to use them")
        Transform(self.start_s, None, self.rate_scale, self.sample, self.model_filter, self.max_tokens)  # checks them

    @property
    def window_s(self) -> float | None:
        """The window that applies: the one set, else the default's 10 minutes where neither a count nor a user's
        trace says otherwise."""
        if self.duration_s is not None:
            return None if math.isinf(self.duration_s) else self.duration_s
        if self.num_requests is not None or (self.trace and str(self.trace) not in SHIPPED
                                              and self.arrival_kind == "trace"):
            return None
        return DEFAULT_WINDOW_S

    @property
    def _lengths_set(self) -> bool:
        return self.input_len != "empirical" or self.output_len != "empirical"

    @property
    def arrival_kind(self) -> str:
        return self.arrival or ("trace" if self.trace and not self._lengths_set else "poisson")

    def describe(self) -> str:
        """One line for a report title."""
        if self.arrival_kind == "trace":
            parts = [f"trace {self.trace}"]
            if self.model_filter:
                parts.append(f"model {self.model_filter}")
            if self.start_s:
                parts.append(f"from {self.start_s:g} s")
            if self.sample < 1:
                parts.append(f"{self.sample:g} sampled")
            if self.rate_scale != 1:
                parts.append(f"x{self.rate_scale:g} rate")
            if self.rate:
                parts.append(f"rescaled to {self.rate:g} req/s")
            return ", ".join(parts)
        lengths = []
        for what, spec in (("prompts", self.input_len), ("outputs", self.output_len)):
            lengths.append(f"{what} {'from ' + str(self.trace) if spec == 'empirical' else spec}")
        burst = f" (cv {self.cv:g})" if self.arrival_kind == "gamma" else ""
        if self.concurrency is not None:
            pace = f" at {self.rate:g} req/s" if self.rate else ""
            return f"closed loop, {self.concurrency} in flight{pace}, {', '.join(lengths)}"
        return f"{self.arrival_kind}{burst} arrivals at {self.rate or 1.0:g} req/s, {', '.join(lengths)}"
