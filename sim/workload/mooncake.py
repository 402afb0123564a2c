"""Mooncake traces: JSONL with `timestamp` (ms), `input_length`, `output_length`, `hash_ids` (one per 512 tokens).

Source: kvcache-ai/Mooncake, FAST25-release/traces (Apache-2.0); Qin et al., Mooncake, FAST'25.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from sim.errors import FleetsimError

BLOCK_TOKENS = 512  # Mooncake's hash block size


def read_mooncake(path: Path) -> pl.DataFrame:
    ts, inp, out, hashes = [], [], [], []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FleetsimError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise FleetsimError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            for field, kind in (("timestamp", (int, float)), ("input_length", int), ("output_length", int)):
                value = obj.get(field)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise FleetsimError(f"{path}:{lineno}: field '{field}' must be a number"
                                        f"{'' if field == 'timestamp' else ' (integer)'}, got {value!r}")
            h = obj.get("hash_ids", [])
            if not isinstance(h, list) or not all(isinstance(x, int) for x in h):
                raise FleetsimError(f"{path}:{lineno}: field 'hash_ids' must be a list of integers")
            ts.append(float(obj["timestamp"]) / 1000.0)
            inp.append(obj["input_length"])
            out.append(obj["output_length"])
            hashes.append(h)
    if not ts:
        raise FleetsimError(f"{path}: empty file")
    t0 = min(ts)
    return pl.DataFrame({
        "arrival_s": [t - t0 for t in ts],
        "input_tokens": inp,
        "output_tokens": out,
        "prefix_hashes": hashes,
    }, schema={"arrival_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64,
               "prefix_hashes": pl.List(pl.Int64)})
