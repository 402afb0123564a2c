"""The shipped hardware catalog: hardware/gpus, hardware/nodes, hardware/fabrics (TOML cards with sources)."""

from __future__ import annotations

from functools import cache
from typing import Any

from sim.core.paths import data_dir
from sim.core.toml_card import cards_in, read_toml, resolve_name
from sim.errors import FleetsimError
from sim.hardware.specs import FabricSpec, GPUSpec, NodeSpec


@cache
def _cards(kind: str) -> dict[str, dict[str, Any]]:
    return {name: read_toml(path) for name, path in cards_in(data_dir("hardware") / kind).items()}


def gpu_names() -> list[str]:
    return sorted(_cards("gpus"))


def node_names() -> list[str]:
    return sorted(_cards("nodes"))


def fabric_names() -> list[str]:
    return sorted(_cards("fabrics"))


def hardware_card(kind: str, name: str) -> dict[str, Any]:
    cards = _cards(kind)
    return cards[resolve_name(name, cards, kind.rstrip("s").replace("gpu", "GPU"))]


def _build(cls: type, card: dict[str, Any], what: str):  # noqa: ANN202
    fields = {k: v for k, v in card.items() if k != "aliases"}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise FleetsimError(f"{what} card '{card.get('name')}': {exc}") from None


def load_gpu(name: str) -> GPUSpec:
    return _build(GPUSpec, hardware_card("gpus", name), "GPU")


def load_node(name: str) -> NodeSpec:
    return _build(NodeSpec, hardware_card("nodes", name), "node")


def load_fabric(name: str) -> FabricSpec:
    return _build(FabricSpec, hardware_card("fabrics", name), "fabric")
