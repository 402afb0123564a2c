"""OpenAI-style request logs, JSON lines, one request per line, as gateways and proxies write them.

Per line: a time (`timestamp`, `created`, `created_at` or `request_time`: Unix seconds, milliseconds, or an ISO
8601 string); `usage.prompt_tokens` and `usage.completion_tokens` (at the top level or under `response`); optionally
`model`, a session (`session_id`, `conversation_id` or `user`), and measured latencies: `ttft_ms` / `ttft_s`, and
`latency_ms` / `latency_s` / `duration_ms` (the whole request, E2E).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from sim.core.checks import MAX_TOKENS
from sim.workload.badrows import BadRows
from sim.workload.jsonl import objects

TIME_KEYS = ("timestamp", "created", "created_at", "request_time")
SESSION_KEYS = ("session_id", "conversation_id", "user")


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # ms since 1970 are > 1e11 after 1973
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _latency(obj: dict, stem: str) -> float | None:
    for key, scale in ((f"{stem}_s", 1.0), (f"{stem}_ms", 1e-3)):
        value = obj.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value) * scale
    return None


def read_openai_log(path: Path, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    cols: dict[str, list] = {k: [] for k in ("arrival_s", "input_tokens", "output_tokens", "model", "session_id",
                                             "ttft_s", "e2e_s", "line")}
    for lineno, obj in objects(path, bad):
        key = next((k for k in TIME_KEYS if k in obj), None)
        t = _seconds(obj.get(key)) if key else None
        if t is None:
            bad.report(lineno, None, key or "timestamp", "Unix seconds or an ISO 8601 time", obj.get(key))
            continue
        response = obj.get("response") if isinstance(obj.get("response"), dict) else {}
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else response.get("usage")
        if not isinstance(usage, dict):
            bad.report(lineno, None, "usage", "an object with prompt_tokens and completion_tokens", None)
            continue
        tokens = []
        for name in ("prompt_tokens", "completion_tokens"):
            value = usage.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TOKENS:
                bad.report(lineno, None, f"usage.{name}", f"an integer from 0 to {MAX_TOKENS:,}", value)
                break
            tokens.append(value)
        if len(tokens) < 2:
            continue
        session = next((obj[k] for k in SESSION_KEYS if isinstance(obj.get(k), (str, int))), None)
        model = obj.get("model", response.get("model"))
        e2e = _latency(obj, "latency")
        if e2e is None:
            ms = obj.get("duration_ms")
            e2e = float(ms) / 1e3 if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0 else None
        for name, value in (("arrival_s", t), ("input_tokens", tokens[0]), ("output_tokens", tokens[1]),
                            ("model", model if isinstance(model, str) else None),
                            ("session_id", None if session is None else str(session)),
                            ("ttft_s", _latency(obj, "ttft")), ("e2e_s", e2e), ("line", lineno)):
            cols[name].append(value)
    df = pl.DataFrame(cols, schema={"arrival_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64,
                                    "model": pl.String, "session_id": pl.String, "ttft_s": pl.Float64,
                                    "e2e_s": pl.Float64, "line": pl.Int64})
    if df["ttft_s"].is_not_null().any() and df["e2e_s"].is_not_null().any():
        df = df.with_columns(pl.when(pl.col("output_tokens") > 1)
                             .then((pl.col("e2e_s") - pl.col("ttft_s")) / (pl.col("output_tokens") - 1))
                             .alias("tpot_s"))
    return df
