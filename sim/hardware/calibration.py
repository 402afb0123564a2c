"""The fitted efficiency coefficients of one GPU (see sim.cost.calibration), read from hardware/calibration/<key>.toml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sim.core.paths import data_dir
from sim.core.toml_card import read_toml


@dataclass(frozen=True, slots=True)
class Calibration:
    key: str
    gemm: dict[str, float]
    elementwise: dict[str, float]
    attention: dict[str, float]
    allreduce: dict[str, dict[str, float]]  # "<gpus>x<nodes>" -> alpha_s, busbw_gbps
    sendrecv: dict[str, dict[str, float]]  # "2x1" (same node) / "2x2" (across nodes) -> alpha_s, bw_gbps
    source: str = ""
    nccl: dict[str, dict[str, dict[str, float]]] | None = None  # collective -> "<gpus>x<nodes>" -> alpha, busbw


@cache
def load_calibration(key: str) -> Calibration:
    card = read_toml(data_dir("hardware") / "calibration" / f"{key}.toml")
    return Calibration(key, card["gemm"], card["elementwise"], card["attention"], card["allreduce"], card["sendrecv"],
                       card.get("source", ""), card.get("nccl"))
