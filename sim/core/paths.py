"""Where the shipped catalogs live: inside the wheel (sim/_data/...) or at the repository root in a checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent


def data_dir(kind: str) -> Path:
    """Folder of a shipped catalog: 'models', 'hardware' or 'traces'."""
    for candidate in (_PKG / "_data" / kind, _PKG.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"fleetsim data folder '{kind}' is missing from the installation ({_PKG})")
