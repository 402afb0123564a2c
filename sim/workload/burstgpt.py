"""BurstGPT (Azure OpenAI GPT-3.5/GPT-4 usage at a university): CSV `Timestamp,Model,Request tokens,Response
tokens,Total tokens,Log Type`, Timestamp in seconds from the start of the trace.

Source: github.com/HPMLL/BurstGPT (not shipped); Wang et al., BurstGPT, arXiv 2401.17644. Its README says failed
requests are logged with 0 response tokens (the `_without_fails` files drop them). They never reached the model's
decode, so they are dropped here too, and counted in the load notes.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sim.workload.badrows import BadRows
from sim.workload.csv_table import Column, read_columns

COLUMNS = [Column("Timestamp", "arrival_s", "float"), Column("Model", "model", "str", required=False),
           Column("Request tokens", "input_tokens", "int"), Column("Response tokens", "output_tokens", "int"),
           Column("Log Type", "log_type", "str", required=False)]


def read_burstgpt(path: Path, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    df = read_columns(path, COLUMNS, bad)
    failed = df["output_tokens"] == 0
    if failed.any():
        notes.append(f"{int(failed.sum()):,} failed request(s) (0 response tokens) dropped")
        df = df.filter(~failed)
    return df.drop("log_type", strict=False)
