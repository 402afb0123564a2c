"""Mooncake traces: JSONL with `timestamp` (ms), `input_length`, `output_length`, `hash_ids` (one per 512 tokens).

Source: kvcache-ai/Mooncake, FAST25-release/traces (Apache-2.0); Qin et al., Mooncake, FAST'25.
"""

from __future__ import annotations

import math

from pathlib import Path

import polars as pl

from sim.core.checks import MAX_TOKENS
from sim.workload.badrows import BadRows
from sim.workload.jsonl import objects

BLOCK_TOKENS = 512  # Mooncake's hash block size


def read_mooncake(path: Path, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    ts, inp, out, hashes, lines = [], [], [], [], []
    for lineno, obj in objects(path, bad):
        ok = True
        for name, kind in (("timestamp", "a number"), ("input_length", "an integer"),
                           ("output_length", "an integer")):
            value = obj.get(name)
            good = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf
            if good and kind == "an integer":
                good = isinstance(value, int) and value <= MAX_TOKENS
            if not good:
                bad.report(lineno, None, name, kind + (f" from 0 to {MAX_TOKENS:,}" if kind == "an integer"
                                                       else ", finite, >= 0"), value)
                ok = False
                break
        h = obj.get("hash_ids", [])
        if ok and (not isinstance(h, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                      and 0 <= x < 2**63 for x in h)):
            bad.report(lineno, None, "hash_ids", "a list of integers", h)
            ok = False
        if ok:
            ts.append(float(obj["timestamp"]) / 1000.0)
            inp.append(obj["input_length"])
            out.append(obj["output_length"])
            hashes.append(h)
            lines.append(lineno)
    return pl.DataFrame({"arrival_s": ts, "input_tokens": inp, "output_tokens": out, "prefix_hashes": hashes,
                         "line": lines},
                        schema={"arrival_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64,
                                "prefix_hashes": pl.List(pl.Int64), "line": pl.Int64})
