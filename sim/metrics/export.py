"""Writing a run's results: Parquet tables and a JSON summary, all or nothing."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from sim.errors import FleetsimError


def clean_json(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


OUTPUT_SUFFIXES = (".parquet", ".json", ".html", ".csv", ".js")  # what fleetsim writes into an output folder


def check_output_folder(out_dir: Path | str, overwrite: bool) -> None:
    """A run's --out must be a folder path that is new or empty, or `overwrite` must be given: a rerun would mix
    its files with an earlier run's (an agent run's jobs.parquet beside a request run's tables)."""
    if not str(out_dir).strip():
        raise FleetsimError("--out: expected a folder path, got an empty one")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FleetsimError(f"--out {out_dir}: a file, not a folder")
    if not overwrite and out_dir.is_dir() and any(out_dir.iterdir()):
        raise FleetsimError(f"--out {out_dir}: the folder holds an earlier run's files; pass --overwrite to replace "
                            f"them, or choose another folder")


def write_outputs(out_dir: Path, tables: dict[str, pl.DataFrame], documents: dict[str, Any],
                  pages: dict[str, str] | None = None, files: dict[str, str] | None = None,
                  replace_old: bool = False) -> list[Path]:
    """Write `name.parquet` per table, `name.json` per document, `name.html` per page and other files by their
    full name into out_dir; nothing is left half-written. `replace_old`: the folder's earlier outputs (files with
    fleetsim's suffixes) are removed once the new ones are ready, so that none of an older run's stay beside them."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fleetsim-", dir=out_dir))
    except OSError as exc:
        raise FleetsimError(f"--out {out_dir}: cannot create the output folder ({exc.strerror})") from None
    written: list[Path] = []
    try:
        for name, df in tables.items():
            df.write_parquet(staging / f"{name}.parquet")
        for name, doc in documents.items():
            (staging / f"{name}.json").write_text(json.dumps(clean_json(doc), indent=2) + "\n")
        for name, page in (pages or {}).items():
            (staging / f"{name}.html").write_text(page)
        for name, text in (files or {}).items():
            (staging / name).write_text(text)
        if replace_old:
            fresh = {item.name for item in staging.iterdir()}
            for old in out_dir.iterdir():
                if old.is_file() and old.suffix in OUTPUT_SUFFIXES and old.name not in fresh:
                    old.unlink()
        for item in sorted(staging.iterdir()):
            target = out_dir / item.name
            item.replace(target)
            written.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
