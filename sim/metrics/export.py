"""Writing a run's results: Parquet tables and a JSON summary, all or nothing."""

from __future__ import annotations

import json
import math
import os
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


def write_folder(out_dir: Path | str, tables: dict[str, pl.DataFrame], documents: dict[str, Any],
                 pages: dict[str, str] | None = None, files: dict[str, str] | None = None,
                 overwrite: bool = False) -> list[Path]:
    """Write a run's outputs as one folder, all or nothing: every file goes into a hidden sibling folder, which is
    renamed into place only once all are written, so a failure (a full disk, an unwritable path, Ctrl-C) leaves the
    old folder as it was and no partial folder behind. With `overwrite`, an earlier run's outputs (files with
    fleetsim's suffixes) go and anything else the folder held (a user's notes, sub-folders) is kept."""
    check_output_folder(out_dir, overwrite)
    shown = Path(out_dir)
    target = Path(os.path.abspath(shown.resolve() if shown.is_symlink() else shown))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as exc:
        raise FleetsimError(f"--out {shown}: cannot create the output folder ({exc.strerror})") from None
    try:
        names = _write_files(staging, shown, tables, documents, pages, files)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would make the outputs private to this user
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [shown / name for name in names]


def write_into(folder: Path, tables: dict[str, pl.DataFrame], documents: dict[str, Any],
               pages: dict[str, str] | None = None, files: dict[str, str] | None = None) -> list[Path]:
    """Add or replace output files in a folder that holds more than them (a search's store of finished plans, which
    a waiting search may have open, so the folder itself is never swapped). Each file appears whole or not at
    all: all are written into a staging folder inside it first, then renamed in (one rename each, same disk)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fleetsim-", dir=folder))
    except OSError as exc:
        raise FleetsimError(f"--out {folder}: cannot create the output folder ({exc.strerror})") from None
    try:
        names = _write_files(staging, folder, tables, documents, pages, files)
        for name in names:
            (staging / name).replace(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [folder / name for name in names]


def _write_files(into: Path, shown: Path, tables: dict[str, pl.DataFrame], documents: dict[str, Any],
                 pages: dict[str, str] | None, files: dict[str, str] | None) -> list[str]:
    contents: list[tuple[str, Any]] = [(f"{n}.parquet", df) for n, df in tables.items()]
    contents += [(f"{n}.json", json.dumps(clean_json(doc), indent=2) + "\n") for n, doc in documents.items()]
    contents += [(f"{n}.html", page) for n, page in (pages or {}).items()]
    contents += list((files or {}).items())
    for name, content in contents:
        try:
            if isinstance(content, pl.DataFrame):
                content.write_parquet(into / name)
            else:
                (into / name).write_text(content, encoding="utf-8")
        except OSError as exc:
            raise FleetsimError(f"--out {shown}: cannot write {name} ({exc.strerror}); nothing was changed") \
                from None
    return sorted(name for name, _ in contents)


def _swap_in(staging: Path, target: Path) -> None:
    """Put the finished staging folder where `target` is. A new or empty target takes one atomic rename; a target
    holding an earlier run's files is renamed aside first, and put back if the second rename fails."""
    stood_in = _cwd() == target
    if not target.exists() or not any(target.iterdir()):
        os.replace(staging, target)  # POSIX rename replaces an empty folder atomically
        if stood_in:
            os.chdir(target)
        return
    fresh = {item.name for item in staging.iterdir()}
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, aside)  # `aside` is empty, so this rename replaces it
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(aside, target)
        raise
    for entry in aside.iterdir():
        ours = entry.is_file() and entry.suffix in OUTPUT_SUFFIXES
        if not ours and entry.name not in fresh:
            entry.rename(target / entry.name)
    shutil.rmtree(aside, ignore_errors=True)
    if stood_in:  # the process stood in the old folder, now removed: stand in the new one of the same name
        os.chdir(target)


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
