"""Simulator traces in CSV: Splitwise's (`arrival_timestamp,prompt_size,token_size`, plus request_id,
request_type, application_id, batch_size) and Vidur's (`arrived_at,num_prefill_tokens,num_decode_tokens`); both
with arrival times in seconds.

Sources: the Splitwise simulator (github.com/Mutinifni/splitwise-sim, traces/*.csv) and microsoft/vidur
(data/processed_traces), whose trace readers define these columns. No such file is shipped; the tests use
fixtures written from those columns.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sim.workload.badrows import BadRows
from sim.workload.csv_table import Column, read_columns

SPLITWISE = [Column("arrival_timestamp", "arrival_s", "float"), Column("prompt_size", "input_tokens", "int"),
             Column("token_size", "output_tokens", "int"), Column("application_id", "session_id", "str", False)]
VIDUR = [Column("arrived_at", "arrival_s", "float"), Column("num_prefill_tokens", "input_tokens", "int"),
         Column("num_decode_tokens", "output_tokens", "int")]


def read_splitwise(path: Path, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    return read_columns(path, SPLITWISE, bad)


def read_vidur(path: Path, bad: BadRows, notes: list[str]) -> pl.DataFrame:
    return read_columns(path, VIDUR, bad)
