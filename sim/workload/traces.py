"""Trace lookup and reading: shipped traces by name, files by path, the format sniffed from the content (or
given), every reader producing the canonical table (sim/workload/table.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from sim.core.paths import data_dir
from sim.errors import FleetsimError
from sim.workload.agent_table import read_agent_table
from sim.workload.azure import read_azure
from sim.workload.badrows import BadRows
from sim.workload.burstgpt import read_burstgpt
from sim.workload.mooncake import BLOCK_TOKENS, read_mooncake
from sim.workload.openai_log import read_openai_log
from sim.workload.shipped import SHIPPED
from sim.workload.sniff import sniff
from sim.workload.splitwise import read_splitwise, read_vidur
from sim.workload.table import TraceTable, finish
from sim.workload.vllm_bench import read_vllm_bench

Reader = Callable[[Path, BadRows, list[str]], pl.DataFrame]
READERS: dict[str, Reader] = {
    "azure": read_azure, "burstgpt": read_burstgpt, "mooncake": read_mooncake, "splitwise": read_splitwise,
    "vidur": read_vidur, "vllm-bench": read_vllm_bench, "openai": read_openai_log, "agent": read_agent_table,
}
FORMATS = tuple(READERS)
PREFIX_BLOCK_TOKENS = {"mooncake": BLOCK_TOKENS}


def resolve(name_or_path: str | Path, fmt: str = "auto") -> tuple[Path, str]:
    """The file of a shipped trace name or a path, and its format."""
    if fmt != "auto" and fmt not in READERS:
        raise FleetsimError(f"trace format '{fmt}' is unknown; expected one of auto, {', '.join(FORMATS)}")
    if str(name_or_path) in SHIPPED:
        file, shipped_fmt = SHIPPED[str(name_or_path)]
        return data_dir("traces") / file, shipped_fmt
    path = Path(name_or_path)
    if not path.exists():
        raise FleetsimError(f"trace '{name_or_path}': no such file, and not a shipped trace ({', '.join(SHIPPED)})")
    if path.is_file() and path.stat().st_size == 0:
        raise FleetsimError(f"{path}: empty file")
    return path, sniff(path, FORMATS) if fmt == "auto" else fmt


_READ: dict[tuple, TraceTable] = {}
_READ_KEPT = 4


def read_trace(name_or_path: str | Path, fmt: str = "auto", skip_bad_rows: bool = False) -> TraceTable:
    """A trace as the canonical request table, with its format, prefix block size and load notes. A file read
    before in this process, unchanged since (same size and modification time), is not parsed again: a search
    builds hundreds of runs of one trace."""
    path, fmt = resolve(name_or_path, fmt)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, fmt, skip_bad_rows)
    except OSError:
        key = None
    if key is not None and key in _READ:
        kept = _READ[key]
        return TraceTable(kept.table, kept.fmt, kept.block_tokens, list(kept.notes))
    trace = _read(path, fmt, skip_bad_rows)
    if key is not None and path.is_file():
        _READ[key] = TraceTable(trace.table, trace.fmt, trace.block_tokens, list(trace.notes))
        while len(_READ) > _READ_KEPT:
            del _READ[next(iter(_READ))]
    return trace


def _read(path: Path, fmt: str, skip_bad_rows: bool) -> TraceTable:
    bad = BadRows(str(path), skip=skip_bad_rows)
    notes: list[str] = []
    df = finish(READERS[fmt](path, bad, notes), str(path), bad, notes)
    if bad.count:
        notes.append(bad.note())
    return TraceTable(df, fmt, PREFIX_BLOCK_TOKENS.get(fmt, 0), notes)


def load_trace(name_or_path: str, fmt: str = "auto") -> tuple[pl.DataFrame, int]:
    """The canonical request table of a trace and its prefix block size in tokens (0: no prefix hashes)."""
    t = read_trace(name_or_path, fmt)
    return t.table, t.block_tokens
