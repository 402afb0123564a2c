"""Typed columns out of a large CSV, streamed with a polars lazy scan (only the parsed numbers are held).

Every field is read as text and parsed with strict=False; a row whose field does not parse (or is empty) is
reported through BadRows with its line (header = line 1) and column (1-based field position). Line numbers assume
no quoted newlines inside fields, which none of the trace formats has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from sim.errors import FleetsimError
from sim.workload.badrows import SAMPLES, BadRows

_TZ_SUFFIX = r"(Z|[+-]\d\d:?\d\d)$"
EXPECTED = {"int": "a non-negative integer", "float": "a number", "str": "text",
            "datetime": "a timestamp like 2023-11-16 18:15:46.68"}


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # header in the file
    alias: str  # column of the canonical table
    kind: str  # int, float, str or datetime
    required: bool = True


def _parse(col: Column) -> pl.Expr:
    raw = pl.col(col.name).str.strip_chars()
    if col.kind == "int":
        # Integers written as 12.0 are accepted; fractions, negatives, NaN, infinity and values past 2**53 (where
        # floats stop being exact integers, and the cast to int64 would fail for the whole file) are bad rows.
        value = raw.cast(pl.Float64, strict=False)
        ok = value.is_finite() & (value >= 0) & (value == value.floor()) & (value < 2.0**53)
        return pl.when(ok).then(value).otherwise(None).cast(pl.Int64).alias(col.alias)
    if col.kind == "float":
        value = raw.cast(pl.Float64, strict=False)
        return pl.when(value.is_finite()).then(value).otherwise(None).alias(col.alias)
    if col.kind == "datetime":
        return raw.str.replace(_TZ_SUFFIX, "").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False).alias(col.alias)
    return raw.alias(col.alias)


def read_columns(path: Path, columns: list[Column], bad: BadRows, separator: str = ",") -> pl.DataFrame:
    """The parsed columns (aliases) of every good row, plus `line` (its line in the file)."""
    try:
        scan = pl.scan_csv(path, infer_schema=False, separator=separator, truncate_ragged_lines=False)
        header = scan.collect_schema().names()
    except pl.exceptions.NoDataError:
        raise FleetsimError(f"{path}: empty file") from None
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise FleetsimError(f"{path}: not a readable CSV: {str(exc).splitlines()[0]}") from None
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise FleetsimError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}; the header has "
                            f"{', '.join(repr(h) for h in header)}")
    present = [c for c in columns if c.name in header]
    lazy = scan.with_row_index("line", offset=2).select("line", *[_parse(c) for c in present])
    try:
        df = lazy.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        if "more fields" not in str(exc):
            raise FleetsimError(f"{path}: not a readable CSV: {str(exc).splitlines()[0]}") from None
        # Rows with more fields than the header: name them (the error path only, so a Python pass is fine).
        ragged = _ragged_lines(path, len(header), separator)
        for line, fields in ragged[:SAMPLES]:
            bad.problem(line, len(header) + 1, f"{fields} fields where the header has {len(header)}")
        bad.count += max(0, len(ragged) - SAMPLES)
        scan = pl.scan_csv(path, infer_schema=False, separator=separator, truncate_ragged_lines=True)
        lazy = scan.with_row_index("line", offset=2).select("line", *[_parse(c) for c in present])
        df = lazy.collect(engine="streaming").filter(~pl.col("line").is_in([line for line, _ in ragged]))
    if df.height == 0:
        raise FleetsimError(f"{path}: no rows after the header")
    checked = [c for c in present if c.kind != "str"]
    broken = df.select(pl.any_horizontal([pl.col(c.alias).is_null() for c in checked])).to_series() if checked \
        else pl.Series([False] * df.height)
    if broken.any():
        _report(scan, df.filter(broken), checked, header, bad)
        df = df.filter(~broken)
        if df.height == 0:
            raise FleetsimError(f"{path}: no readable rows ({bad.note()})")
    return df.with_columns(pl.col("line").cast(pl.Int64))


def _ragged_lines(path: Path, width: int, separator: str) -> list[tuple[int, int]]:
    """(line, fields) of each line with more fields than the header (no quoted separators in these formats)."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, text in enumerate(fh, 1):
            fields = text.count(separator) + 1
            if lineno > 1 and fields > width:
                out.append((lineno, fields))
    return out


def _report(scan: pl.LazyFrame, rows: pl.DataFrame, checked: list[Column], header: list[str], bad: BadRows) -> None:
    """Name each bad row's first bad field, reading its raw text back for the sample rows only."""
    sample = rows.head(1 if not bad.skip else SAMPLES)
    shown = sample["line"].to_list()
    raw = (scan.with_row_index("line", offset=2).filter(pl.col("line").is_in(shown))
           .select("line", *[c.name for c in checked]).collect())
    text = {r["line"]: r for r in raw.iter_rows(named=True)}
    for row in sample.iter_rows(named=True):
        col = next(c for c in checked if row[c.alias] is None)
        got = text[row["line"]][col.name] if row["line"] in text else "..."
        bad.report(row["line"], header.index(col.name) + 1, col.name, EXPECTED[col.kind], got if got is not None
                   else "")
    bad.count += len(rows) - len(sample)  # the rest are counted, not described
