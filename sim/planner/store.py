"""A results store keyed by a hash of the whole scenario: nothing is simulated twice, and a killed search resumes.

One JSON line per finished simulation, appended and flushed as soon as it finishes; a line cut short by a kill is
ignored when the store is read back.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sim._version import __version__
from sim.scenario import Scenario


def scenario_key(scenario: Scenario, extra: dict[str, Any] | None = None) -> str:
    """Stable hash of everything that determines a result (and of the simulator's version)."""
    doc = {"fleetsim": __version__, "scenario": asdict(scenario), "extra": extra or {}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ResultStore:
    def __init__(self, path: Path | None) -> None:
        """`path` None keeps results in memory only."""
        self.path = Path(path) if path else None
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path and self.path.exists():
            with open(self.path) as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                        self.rows[entry["key"]] = entry["row"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut short by an interrupted run
        self.added = 0

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row
        self.added += 1
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"key": key, "row": row}, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
