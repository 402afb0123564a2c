"""Azure LLM inference traces (2023 and 2024): CSV `TIMESTAMP,ContextTokens,GeneratedTokens`.

Source: Azure/AzurePublicDataset, data/AzureLLMInferenceTrace_{code,conv}.csv (CC-BY-4.0); Patel et al., Splitwise.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sim.errors import FleetsimError

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def read_azure(path: Path) -> pl.DataFrame:
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.NoDataError:
        raise FleetsimError(f"{path}: empty file") from None
    except pl.exceptions.ComputeError as exc:
        raise FleetsimError(f"{path}: not a readable CSV: {str(exc).splitlines()[0]}") from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise FleetsimError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    parsed = raw.select(
        pl.col("TIMESTAMP").str.strip_chars().str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False).alias("ts"),
        pl.col("ContextTokens").str.strip_chars().cast(pl.Int64, strict=False).alias("input_tokens"),
        pl.col("GeneratedTokens").str.strip_chars().cast(pl.Int64, strict=False).alias("output_tokens"),
    )
    expected = {"ts": "a timestamp like 2023-11-16 18:15:46.68", "input_tokens": "an integer",
                "output_tokens": "an integer"}
    source = {"ts": "TIMESTAMP", "input_tokens": "ContextTokens", "output_tokens": "GeneratedTokens"}
    for col, what in expected.items():
        nulls = parsed[col].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            value = raw[source[col]][row]
            raise FleetsimError(f"{path}:{row + 2}: field '{source[col]}' must be {what}, got {value!r}")
    t0 = parsed["ts"].min()
    return parsed.select(
        ((pl.col("ts") - t0).dt.total_microseconds() / 1e6).alias("arrival_s"),
        "input_tokens",
        "output_tokens",
    )
