"""What a user does to a trace before replaying it: a time window, rate scaling, sampling, a model filter and a
length cap. Each is a function of the canonical table; `apply` runs them in that order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.errors import FleetsimError

if TYPE_CHECKING:
    import polars as pl

# numpy and polars are imported inside the functions: a WorkloadSpec checks its replay fields by making a Transform,
# and making one (for a scenario's defaults in `--help`) should not load them.


@dataclass(frozen=True, slots=True)
class Transform:
    start_s: float = 0.0  # drop requests before this many seconds after the first
    duration_s: float | None = None  # keep this many seconds from start_s
    rate_scale: float = 1.0  # k > 1 compresses inter-arrival gaps by k (k times the rate); k < 1 stretches them
    sample: float = 1.0  # keep this fraction of the requests, at random (seeded)
    model: str | None = None  # keep the requests of this model (traces with a model column)
    max_tokens: int | None = None  # clip prompt + output to this many tokens

    def __post_init__(self) -> None:
        num = (int, float)
        checks = (("start_s", lambda v: isinstance(v, num) and 0 <= v < math.inf),
                  ("rate_scale", lambda v: isinstance(v, num) and 1e-6 <= v <= 1e6),
                  ("sample", lambda v: isinstance(v, num) and 0 < v <= 1),
                  ("duration_s", lambda v: v is None or (isinstance(v, num) and v > 0)),
                  ("max_tokens", lambda v: v is None or (isinstance(v, int) and v >= 2)),
                  ("model", lambda v: v is None or isinstance(v, str)))
        for name, ok in checks:
            if isinstance(getattr(self, name), bool) or not ok(getattr(self, name)):
                expected = {"sample": "a fraction in (0, 1]", "max_tokens": "an integer >= 2",
                            "start_s": "a finite number of seconds >= 0", "model": "a model name",
                            "rate_scale": "a factor from 1e-6 to 1e6"}.get(name, "a positive number")
                field_name = {"model": "model_filter"}.get(name, name)
                raise FleetsimError(f"workload.{field_name}: expected {expected}, got {getattr(self, name)!r}")


def filter_model(df: pl.DataFrame, model: str) -> pl.DataFrame:
    import polars as pl

    if "model" not in df.columns or df["model"].is_null().all():
        raise FleetsimError(f"workload.model_filter '{model}': the trace has no model column")
    kept = df.filter(pl.col("model") == model)
    if kept.height == 0:
        models = df["model"].drop_nulls().unique().sort().head(10).to_list()
        raise FleetsimError(f"workload.model_filter: no request of model '{model}'; the trace has "
                            f"{', '.join(models)}")
    return kept


def time_window(df: pl.DataFrame, start_s: float, duration_s: float | None) -> pl.DataFrame:
    import polars as pl

    t0 = df["arrival_s"].min() + start_s
    kept = df.filter(pl.col("arrival_s") >= t0)
    if duration_s is not None:
        kept = kept.filter(pl.col("arrival_s") < t0 + duration_s)
    if kept.height == 0:
        raise FleetsimError(f"workload: no request in the window from {start_s:g} s"
                            + (f" for {duration_s:g} s" if duration_s is not None else ""))
    return kept.with_columns(pl.col("arrival_s") - kept["arrival_s"].min())


def scale_rate(df: pl.DataFrame, k: float) -> pl.DataFrame:
    import polars as pl

    return df if k == 1.0 else df.with_columns(pl.col("arrival_s") / k)


def sample(df: pl.DataFrame, fraction: float, seed: int) -> pl.DataFrame:
    import numpy as np
    import polars as pl

    if fraction >= 1.0:
        return df
    keep = np.random.default_rng([seed, 7]).random(df.height) < fraction
    kept = df.filter(pl.Series(keep))
    if kept.height == 0:
        raise FleetsimError(f"workload.sample {fraction:g}: no request kept out of {df.height:,}")
    return kept


def clip(df: pl.DataFrame, max_tokens: int) -> tuple[pl.DataFrame, int]:
    """Prompt + output capped at max_tokens (the output keeps at most half of it), and how many rows it changed."""
    import polars as pl

    total = pl.col("input_tokens") + pl.col("output_tokens")
    over = int(df.select((total > max_tokens).sum()).item())
    if not over:
        return df, 0
    out = pl.min_horizontal(pl.col("output_tokens"), pl.lit(max_tokens // 2))
    clipped = df.with_columns(pl.when(total > max_tokens).then(out).otherwise(pl.col("output_tokens"))
                              .alias("output_tokens"))
    clipped = clipped.with_columns(pl.min_horizontal(pl.col("input_tokens"),
                                                     max_tokens - pl.col("output_tokens")).alias("input_tokens"))
    return clipped, over


def apply(df: pl.DataFrame, t: Transform, seed: int) -> tuple[pl.DataFrame, int]:
    """The table after every transformation, and the number of rows clipped."""
    if t.model is not None:
        df = filter_model(df, t.model)
    df = time_window(df, t.start_s, t.duration_s)
    df = sample(df, t.sample, seed)
    df = scale_rate(df, t.rate_scale)
    return clip(df, t.max_tokens) if t.max_tokens is not None else (df, 0)
