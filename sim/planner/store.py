"""A results store keyed by a hash of the whole scenario: nothing is simulated twice, and a killed search resumes.

One JSON line per finished simulation, appended and flushed as soon as it finishes. The key covers what decides a
result and nothing else: the scenario, the content of every file it reads (trace, model config, hardware cards, a
measured routing file: edit one and its results are simulated afresh) and the simulator's version; not the
objective, which only re-ranks. One search writes to a store at a time (an exclusive lock; a second search on the
same store waits, then reuses what the first finished). A line cut short by a kill is cut off before appending.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sim._version import __version__
from sim.errors import FleetsimError
from sim.scenario import Scenario

try:  # POSIX; elsewhere a store has no lock and concurrent searches on one store may repeat work
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (of a folder: of its files' names and bytes, in order), cached by size and mtime
    so that a search over hundreds of plans reads a large trace once."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        memo = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if memo not in _digests:
            fh = hashlib.sha256()
            with open(f, "rb") as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    fh.update(block)
            _digests[memo] = fh.hexdigest()
        h.update(f.name.encode() + b"\0" + _digests[memo].encode())
    return h.hexdigest()


def input_files(scenario: Scenario) -> dict[str, str]:
    """field -> content digest of every file the scenario names by path (catalog names are covered by the
    simulator's version)."""
    refs = {"model": scenario.model, "gpu": scenario.gpu, "node": scenario.node, "fabric": scenario.fabric,
            "workload.trace": scenario.workload.trace}
    if scenario.agents is not None:
        refs["agents.trace"] = scenario.agents.trace
    if scenario.disagg is not None:
        refs["disagg.prefill_gpu"] = scenario.disagg.prefill_gpu
        refs["disagg.decode_gpu"] = scenario.disagg.decode_gpu
    routing = str(scenario.moe_routing).split("+")[0]
    if routing.startswith("measured:"):
        refs["moe_routing"] = routing.split(":", 1)[1]
    out = {}
    for name, ref in refs.items():
        if ref and isinstance(ref, (str, Path)) and Path(ref).exists():  # a file or folder, not a catalog name
            out[name] = file_digest(Path(ref))
    return out


def scenario_key(scenario: Scenario, extra: dict[str, Any] | None = None) -> str:
    """Stable hash of everything that determines a result: the scenario, its input files' content, the
    simulator's version."""
    doc = {"fleetsim": __version__, "scenario": asdict(scenario), "files": input_files(scenario),
           "extra": extra or {}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ResultStore:
    def __init__(self, path: Path | None, waiting: Callable[[], None] | None = None) -> None:
        """`path` None keeps results in memory only. Opening a store takes its lock (`waiting` is called once if
        another search holds it); `close` releases it."""
        self.path = Path(path) if path else None
        self.rows: dict[str, dict[str, Any]] = {}
        self.added = 0
        self._lock = None
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FleetsimError(f"--out {self.path.parent}: cannot create the search's folder "
                                f"({exc.strerror or exc})") from None
        self._take_lock(waiting)
        if self.path.exists():
            self._repair()
            with open(self.path) as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                        self.rows[entry["key"]] = entry["row"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a damaged line: its plan is simulated again

    def _take_lock(self, waiting: Callable[[], None] | None) -> None:
        if fcntl is None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self._lock = open(lock_path, "a+")
        except OSError as exc:
            raise FleetsimError(f"{lock_path}: cannot open the store's lock ({exc.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                waiting()
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    def _repair(self) -> None:
        """Cut a last line left without its newline by a kill, so that the next result starts on a line of its
        own (appending to it would make both unreadable)."""
        with open(self.path, "rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            fh.truncate(data.rfind(b"\n") + 1)

    def close(self) -> None:
        if self._lock is not None:
            if fcntl is not None:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row
        self.added += 1
        if self.path is None:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"key": key, "row": row}, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
