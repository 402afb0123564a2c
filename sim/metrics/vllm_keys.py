"""A run's figures under the keys of vLLM's serving benchmark (`vllm bench serve --save-result`; the result dict of
vllm/benchmarks/serve.py, benchmark()): users who compare against a measured run read the same names.

Per metric in `metrics` (ttft, tpot, itl, e2el): mean_, median_, std_ and p<P>_ (for each P in `percentiles`)
<metric>_ms, in milliseconds. TTFT, TPOT and E2EL are taken over finished requests (TPOT over those with more than one
output token), ITL over every inter-token gap of the run pooled, as vLLM's calculate_metrics does; std is the
population standard deviation (np.std).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from sim.metrics.itl import Weighted

METRICS = ("ttft", "tpot", "itl", "e2el")
DEFAULT_METRICS = ("ttft", "tpot", "itl")  # vLLM's default --percentile-metrics
DEFAULT_PERCENTILES = (99.0,)  # vLLM's default --metric-percentiles
_COLUMN = {"ttft": "ttft_s", "tpot": "tpot_s", "e2el": "e2e_s"}


def percentile_name(p: float) -> str:
    """99 -> '99', 99.9 -> '99.9' (vLLM's key spelling)."""
    return str(int(p)) if float(p).is_integer() else str(p)


def parse_metrics(text: str) -> tuple[str, ...]:
    from sim.errors import FleetsimError

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in METRICS]
    if not names or bad:
        raise FleetsimError(f"--percentile-metrics: expected a comma-separated subset of {','.join(METRICS)}, "
                            f"got {text!r}")
    return names


def parse_percentiles(text: str) -> tuple[float, ...]:
    from sim.core.checks import number
    from sim.errors import FleetsimError

    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise FleetsimError(f"--metric-percentiles: expected comma-separated percentiles in (0, 100], got {text!r}")
    out = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise FleetsimError(f"--metric-percentiles: expected comma-separated percentiles in (0, 100], got "
                                f"{text!r}") from None
        out.append(number(value, "--metric-percentiles", low=0.0, low_open=True, high=100.0,
                          what="percentiles in (0, 100]"))
    return tuple(out)


def vllm_result(requests: pl.DataFrame, itl: Weighted | None, summary: dict[str, Any],
                metrics: Sequence[str] = DEFAULT_METRICS,
                percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict[str, Any]:
    fin = requests.filter(pl.col("status") == "finished")
    out: dict[str, Any] = {
        "duration": summary.get("duration_s"),
        "completed": fin.height,
        "total_input_tokens": int(fin["input_tokens"].sum()) if fin.height else 0,
        "total_output_tokens": int(fin["output_tokens"].sum()) if fin.height else 0,
        "request_throughput": summary.get("throughput_rps"),
        "output_throughput": summary.get("output_tokens_per_s"),
        "total_token_throughput": summary.get("total_tokens_per_s"),
    }
    if summary.get("goodput_rps") is not None:
        out["request_goodput"] = summary["goodput_rps"]
    for metric in metrics:
        keys = [f"mean_{metric}_ms", f"median_{metric}_ms", f"std_{metric}_ms"]
        keys += [f"p{percentile_name(p)}_{metric}_ms" for p in percentiles]
        if metric == "itl":
            if itl is None or itl.size == 0:
                out.update(dict.fromkeys(keys, None))
                continue
            mean, std = itl.mean(), itl.std()
            median, *pcts = itl.percentiles([50.0, *percentiles])
        else:
            values = fin[_COLUMN[metric]].drop_nulls().to_numpy().astype(float)
            values = values[~np.isnan(values)]
            if not values.size:
                out.update(dict.fromkeys(keys, None))
                continue
            mean, std = float(values.mean()), float(values.std())
            median, *pcts = (float(v) for v in np.percentile(values, [50.0, *percentiles]))
        for key, value in zip(keys, [mean, median, std, *pcts]):
            out[key] = value * 1e3
    return out
