"""Iterating the objects of a JSON-lines file, malformed lines reported with their line and column."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sim.errors import FleetsimError
from sim.workload.badrows import BadRows


def objects(path: Path, bad: BadRows) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object goes to `bad`."""
    try:
        fh = open(path, encoding="utf-8", errors="strict")
    except OSError as exc:
        raise FleetsimError(f"{path}: cannot read ({exc.strerror})") from None
    seen = False
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                seen = True
                try:
                    obj = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    bad.problem(lineno, exc.colno, f"invalid JSON ({exc.msg})")
                    continue
                if not isinstance(obj, dict):
                    bad.problem(lineno, 1, f"expected a JSON object, got {type(obj).__name__}")
                    continue
                yield lineno, obj
        except UnicodeDecodeError as exc:
            raise FleetsimError(f"{path}: not UTF-8 text (byte {exc.start} of a line: {exc.reason})") from None
    if not seen:
        raise FleetsimError(f"{path}: empty file")
