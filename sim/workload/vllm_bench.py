"""vLLM `benchmark_serving` (`vllm bench serve`) result JSON, saved with --save-result (per-request lists with
--save-detailed in recent versions): `input_lens`, `output_lens`, `ttfts` (s), `itls` (list of s per request),
`errors`, and the run's `request_rate` and `burstiness`.

The file does not record when each request was sent. Where it has `start_times` (some forks add them) those are
used; otherwise arrivals are regenerated the way the benchmark drew them: Poisson at `request_rate` (gamma with
`burstiness` as its shape), or all at once when the rate was inf. The measured latencies are the run's: TTFT,
TPOT = (E2E - TTFT) / (output - 1), E2E = TTFT + the sum of the ITLs. Failed requests (a non-empty error, or no
output) are dropped, with a count.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from sim.core.json_file import read_json
from sim.core.checks import MAX_TOKENS
from sim.errors import FleetsimError
from sim.workload.badrows import BadRows

LISTS = ("input_lens", "output_lens", "ttfts")


def read_vllm_bench(path: Path, bad: BadRows, notes: list[str], seed: int = 0) -> pl.DataFrame:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise FleetsimError(f"{path}: expected a benchmark_serving result object")
    missing = [k for k in LISTS if not isinstance(doc.get(k), list)]
    if missing:
        raise FleetsimError(f"{path}: field(s) {', '.join(missing)} missing: save the result with --save-result "
                            f"(and --save-detailed in recent vLLM) to keep per-request lengths and latencies")
    n = len(doc["input_lens"])
    itls = doc.get("itls") if isinstance(doc.get("itls"), list) else [[] for _ in range(n)]
    errors = doc.get("errors") if isinstance(doc.get("errors"), list) else [""] * n
    for key, values in (("output_lens", doc["output_lens"]), ("ttfts", doc["ttfts"]), ("itls", itls),
                        ("errors", errors)):
        if len(values) != n:
            raise FleetsimError(f"{path}: field '{key}' has {len(values)} entries, 'input_lens' {n}")
    rows, failed = [], 0
    for i in range(n):
        inp, out, ttft, gaps = doc["input_lens"][i], doc["output_lens"][i], doc["ttfts"][i], itls[i]
        if errors[i] or not out:
            failed += 1
            continue
        for name, value, ok in (("input_lens", inp, isinstance(inp, int) and 0 <= inp <= MAX_TOKENS),
                                ("output_lens", out, isinstance(out, int) and 0 <= out <= MAX_TOKENS),
                                ("ttfts", ttft, isinstance(ttft, (int, float)) and 0 <= ttft < math.inf),
                                ("itls", gaps, isinstance(gaps, list) and all(
                                    isinstance(g, (int, float)) and not isinstance(g, bool) and 0 <= g < math.inf
                                    for g in gaps))):
            if not ok:
                bad.report(i + 1, None, f"{name}[{i}]", "a non-negative number" if name != "itls"
                           else "a list of non-negative seconds", value)
                break
        else:
            e2e = float(ttft) + float(sum(gaps))
            rows.append((i, inp, out, float(ttft), (e2e - ttft) / (out - 1) if out > 1 else None, e2e,
                         float(np.median(gaps)) if gaps else None, float(max(gaps)) if gaps else None))
    if failed:
        notes.append(f"{failed:,} failed request(s) (an error or no output) dropped")
    if not rows:
        raise FleetsimError(f"{path}: no successful requests")
    index = [r[0] for r in rows]
    starts = doc.get("start_times")
    if isinstance(starts, list) and len(starts) == n:
        arrivals = np.array([float(starts[i]) for i in index])
    else:
        arrivals = _regenerated(doc, len(rows), seed, path)
        notes.append("the result records no send times: arrivals regenerated from request_rate "
                     f"{doc.get('request_rate')} and burstiness {doc.get('burstiness', 1.0)}")
    model = doc.get("model_id")
    return pl.DataFrame({
        "request_id": index, "arrival_s": arrivals, "input_tokens": [r[1] for r in rows],
        "output_tokens": [r[2] for r in rows], "ttft_s": [r[3] for r in rows], "tpot_s": [r[4] for r in rows],
        "e2e_s": [r[5] for r in rows], "itl_p50_s": [r[6] for r in rows], "itl_max_s": [r[7] for r in rows],
        "model": [model if isinstance(model, str) else None] * len(rows),
        "line": [i + 1 for i in index],
    }, schema_overrides={"request_id": pl.Int64, "arrival_s": pl.Float64, "input_tokens": pl.Int64,
                         "output_tokens": pl.Int64, "ttft_s": pl.Float64, "tpot_s": pl.Float64, "e2e_s": pl.Float64,
                         "itl_p50_s": pl.Float64, "itl_max_s": pl.Float64, "model": pl.String, "line": pl.Int64})


def _regenerated(doc: dict, n: int, seed: int, path: Path) -> np.ndarray:
    rate = doc.get("request_rate", "inf")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        rate = math.inf
    if not math.isfinite(rate) or rate <= 0:
        return np.zeros(n)  # `vllm bench serve --request-rate inf`: every request at once
    try:
        shape = float(doc.get("burstiness") or 1.0)
    except (TypeError, ValueError):
        shape = math.nan
    if not (math.isfinite(shape) and shape > 0):
        raise FleetsimError(f"{path}: burstiness: expected a positive number (the gamma shape of the benchmark's arrivals), "
                            f"got {doc.get('burstiness')!r}")
    gaps = np.random.default_rng(seed).gamma(shape, 1.0 / (rate * shape), n)
    return np.concatenate(([0.0], np.cumsum(gaps[1:])))
