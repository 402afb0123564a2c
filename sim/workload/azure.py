"""Azure LLM inference traces, 2023 (one hour) and 2024 (one week): CSV `TIMESTAMP,ContextTokens,GeneratedTokens`.

Source: Azure/AzurePublicDataset, data/AzureLLMInferenceTrace_{code,conv}.csv and the 2024 AzureLLMInferenceTrace
files (CC-BY-4.0); Patel et al., Splitwise, ISCA'24. Timestamps are wall-clock strings (2023: 7 decimal places;
2024: microseconds, sometimes with a UTC offset, which is dropped); arrivals are replayed relative to the first row.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sim.workload.badrows import BadRows
from sim.workload.csv_table import Column, read_columns

COLUMNS = [Column("TIMESTAMP", "ts", "datetime"), Column("ContextTokens", "input_tokens", "int"),
           Column("GeneratedTokens", "output_tokens", "int")]


def read_azure(path: Path, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    df = read_columns(path, COLUMNS, bad)
    t0 = df["ts"].min()
    return df.select(((pl.col("ts") - t0).dt.total_microseconds() / 1e6).alias("arrival_s"),
                     "input_tokens", "output_tokens", "line")
