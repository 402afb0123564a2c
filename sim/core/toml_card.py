"""Reading TOML cards with errors that name the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from sim.errors import FleetsimError


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise FleetsimError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FleetsimError(f"{path}: is a folder, expected a TOML file") from None
    except OSError as exc:
        raise FleetsimError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise FleetsimError(f"{path}: not a UTF-8 text file (TOML is UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetsimError(f"{path}: invalid TOML: {exc}") from None


def cards_in(folder: Path) -> dict[str, Path]:
    """Card name (file stem) -> path, for every .toml in a folder."""
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_name(name: str, cards: dict[str, dict[str, Any]], what: str) -> str:
    """Canonical card name for a name or alias, case-insensitive; unknown names list the valid ones."""
    key = name.strip().lower()
    for canonical, card in cards.items():
        names = [canonical, *[a.lower() for a in card.get("aliases", [])]]
        if key in names:
            return canonical
    valid = ", ".join(sorted(cards))
    raise FleetsimError(f"unknown {what} '{name}'; valid names: {valid}")
