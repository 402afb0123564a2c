"""The shipped hardware catalog: hardware/gpus, hardware/nodes, hardware/fabrics (TOML cards with sources).

Anywhere a card name is taken, a path to a card file of the same form works too (a GPU fleetsim does not ship, a
node of your own): `--gpu my-cards/rtx4090.toml`. A card is checked when it is read: every field present, of its
type, and every figure positive; a mistake is one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

from sim.core.paths import data_dir
from sim.core.toml_card import cards_in, read_toml, resolve_name
from sim.errors import FleetsimError
from sim.hardware.specs import FabricSpec, GPUSpec, NodeSpec

# GPU families with measured kernel efficiencies (hardware/calibration/<family>.toml); any GPU card borrows one.
CALIBRATION_FAMILIES = ("a100", "h100")


@cache
def _cards(kind: str) -> dict[str, dict[str, Any]]:
    return {name: read_toml(path) for name, path in cards_in(data_dir("hardware") / kind).items()}


def gpu_names() -> list[str]:
    return sorted(_cards("gpus"))


def node_names() -> list[str]:
    return sorted(_cards("nodes"))


def fabric_names() -> list[str]:
    return sorted(_cards("fabrics"))


def is_card_path(name: str) -> bool:
    """Whether a --gpu / --node / --fabric value names a card file rather than a catalog entry."""
    return str(name).endswith(".toml") or "/" in str(name) or Path(str(name)).is_file()


def hardware_card(kind: str, name: str) -> dict[str, Any]:
    if is_card_path(name):
        path = Path(name).expanduser()
        if path.is_dir():
            raise FleetsimError(f"{path}: a folder; expected a {kind.rstrip('s')} card (a .toml file)")
        card = read_toml(path)
        card.setdefault("name", path.stem)
        card["_path"] = str(path)
        return card
    cards = _cards(kind)
    return cards[resolve_name(name, cards, kind.rstrip("s").replace("gpu", "GPU"))]


def _build(cls: type, card: dict[str, Any], what: str):  # noqa: ANN202
    where = _where(card, what)
    fields = {k: v for k, v in card.items() if k not in ("aliases", "_path")}
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise FleetsimError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(known)}")
    missing = [n for n, f in known.items() if n not in fields and f.default is dataclasses.MISSING]
    if missing:
        raise FleetsimError(f"{where}: missing field(s) {', '.join(missing)} (see a shipped card in hardware/"
                            f"{what.lower()}s/ for each one's meaning)")
    for n, value in fields.items():
        kind = known[n].type
        if kind in ("float", "int"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or value == float("inf"):
                raise FleetsimError(f"{where}: field '{n}' must be a positive number, got {value!r}")
            if kind == "int" and not isinstance(value, int):
                raise FleetsimError(f"{where}: field '{n}' must be a positive integer, got {value!r}")
        elif kind == "str" and not isinstance(value, str):
            raise FleetsimError(f"{where}: field '{n}' must be a string, got {value!r}")
    return cls(**fields)


def _where(card: dict[str, Any], what: str) -> str:
    return card.get("_path") or f"{what} card '{card.get('name')}'"


def load_gpu(name: str) -> GPUSpec:
    card = hardware_card("gpus", name)
    gpu = _build(GPUSpec, card, "GPU")
    if gpu.calibration not in CALIBRATION_FAMILIES:
        raise FleetsimError(f"{_where(card, 'GPU')}: calibration '{gpu.calibration}' is not a measured family; "
                            f"expected one of {', '.join(CALIBRATION_FAMILIES)} (whose kernel efficiencies it borrows)")
    return gpu


def load_node(name: str) -> NodeSpec:
    card = hardware_card("nodes", name)
    node = _build(NodeSpec, card, "node")
    if node.link not in ("nvlink", "pcie"):
        raise FleetsimError(f"{_where(card, 'node')}: link must be nvlink or pcie, got '{node.link}'")
    return node


def load_fabric(name: str) -> FabricSpec:
    return _build(FabricSpec, hardware_card("fabrics", name), "fabric")
