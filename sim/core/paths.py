"""Where the shipped catalogs live: inside the wheel (sim/_data/...) or at the repository root in a checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent


_IN_CHECKOUT = {"validation": Path("benchmarks") / "data"}  # where a kind lives at the repository root, if elsewhere


def data_dir(kind: str) -> Path:
    """Folder of shipped data: 'models', 'hardware', 'traces' or 'validation' (measurements the validation report
    scores against)."""
    for candidate in (_PKG / "_data" / kind, _PKG.parent / _IN_CHECKOUT.get(kind, kind)):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"fleetsim data folder '{kind}' is missing from the installation ({_PKG})")
