"""Trace lookup: shipped traces by name, files by path, format by extension or content."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sim.core.paths import data_dir
from sim.errors import FleetsimError
from sim.workload.azure import read_azure
from sim.workload.mooncake import BLOCK_TOKENS, read_mooncake
from sim.workload.table import validate

SHIPPED = {
    "azure-conv": ("azure_conv_2023.csv", "azure"),
    "azure-code": ("azure_code_2023.csv", "azure"),
    "mooncake-conv": ("mooncake_conv_sample.jsonl", "mooncake"),
}
READERS = {"azure": read_azure, "mooncake": read_mooncake}
PREFIX_BLOCK_TOKENS = {"mooncake": BLOCK_TOKENS}


def sniff(path: Path) -> str:
    with open(path, errors="replace") as fh:
        head = fh.readline().strip()
    if head.startswith("{"):
        return "mooncake"
    if head.upper().startswith("TIMESTAMP"):
        return "azure"
    raise FleetsimError(f"{path}: unknown trace format (first line {head[:60]!r}); pass --format "
                        f"({', '.join(READERS)})")


def load_trace(name_or_path: str, fmt: str = "auto") -> tuple[pl.DataFrame, int]:
    """The canonical request table of a trace and its prefix block size in tokens (0: no prefix hashes)."""
    if fmt != "auto" and fmt not in READERS:
        raise FleetsimError(f"trace format '{fmt}' is unknown; expected one of auto, {', '.join(READERS)}")
    if name_or_path in SHIPPED:
        file, fmt = SHIPPED[name_or_path]
        path = data_dir("traces") / file
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FleetsimError(f"trace '{name_or_path}': no such file, and not a shipped trace "
                                f"({', '.join(SHIPPED)})")
        if path.stat().st_size == 0:
            raise FleetsimError(f"{path}: empty file")
        if fmt == "auto":
            fmt = sniff(path)
    df = validate(READERS[fmt](path), str(path))
    return df, PREFIX_BLOCK_TOKENS.get(fmt, 0)
