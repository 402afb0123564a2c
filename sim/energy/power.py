"""What one GPU draws: idle between steps, and during a step a floor plus terms linear in how busy its compute units
and its memory are, up to the card's TDP; a power cap's effect on step times.

    busy power / TDP = floor + compute x U_c + memory x U_m      (at most 1)
    U_c = step FLOPs per GPU / (peak FLOP/s x step time),  U_m = step bytes per GPU / (HBM bytes/s x step time)

The three coefficients are fractions of TDP, fitted once to Splitwise's measured power of Llama-2-70B and BLOOM-176B
on A100s (`python -m sim.energy.calibration`, hardware/calibration/power.toml) and taken to hold for every card in
units of its own TDP: an assumption (the H100 rows of the same file carry no power), stated in docs/validation.md.
The floor is what a GPU running kernels at all draws (clocks up, launches, NCCL polling); idle power, between steps,
is the card's own figure.

A power cap C lowers the clocks at which compute-bound work runs until a fully busy GPU draws C: such work runs
f = ((1 - floor) / (C / TDP - floor)) ** exponent times slower, and a step's compute-bound share U_c / (U_c + U_m)
of its time stretches by f while memory-bound work keeps its pace (HBM bandwidth does not scale with the SM clock).
The exponent is fitted to Splitwise's power-capped H100 (prompt steps 1.30x slower, token steps unchanged; see
sim/energy/calibration.py for the cap it assumes). So a cap never speeds a step up, and slows compute-bound prefill
more than memory-bound decode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from sim.core.paths import data_dir
from sim.core.toml_card import read_toml
from sim.errors import FleetsimError


@cache
def shipped_coefficients() -> dict:
    """The fitted coefficients and their provenance (hardware/calibration/power.toml)."""
    return read_toml(data_dir("hardware") / "calibration" / "power.toml")


@dataclass(frozen=True)
class PowerModel:
    tdp_w: float
    idle_w: float
    floor: float  # fractions of TDP
    compute: float
    memory: float
    cap_exponent: float
    peak_flops: float  # per GPU
    hbm_bytes_per_s: float
    cap_w: float | None = None

    @classmethod
    def for_gpu(cls, tdp_w: float, idle_w: float, peak_flops: float, hbm_bytes_per_s: float,
                cap_w: float | None = None) -> PowerModel:
        c = shipped_coefficients()
        model = cls(tdp_w, idle_w, float(c["floor"]), float(c["compute"]), float(c["memory"]),
                    float(c["cap_exponent"]), peak_flops, hbm_bytes_per_s, cap_w)
        if cap_w is not None:
            if not (math.isfinite(cap_w) and model.floor_w < cap_w < tdp_w):
                raise FleetsimError(f"power_cap_w: expected watts between the GPU's active floor "
                                    f"({model.floor_w:.0f} W, below which no step can run) and its TDP "
                                    f"({tdp_w:.0f} W, at which a cap never binds), got {cap_w!r}")
        return model

    @property
    def floor_w(self) -> float:
        return self.floor * self.tdp_w

    def uncapped_watts(self, flops: np.ndarray, nbytes: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """Per-GPU draw of steps of `flops` and `nbytes` per GPU lasting `seconds`, without a cap."""
        t = np.maximum(seconds, 1e-12)
        u_c = flops / (self.peak_flops * t)
        u_m = nbytes / (self.hbm_bytes_per_s * t)
        return self.tdp_w * np.minimum(self.floor + self.compute * u_c + self.memory * u_m, 1.0)

    @property
    def cap_factor(self) -> float:
        """How many times slower fully compute-bound work runs under the cap (1.0 without one)."""
        if self.cap_w is None:
            return 1.0
        return ((1.0 - self.floor) / (self.cap_w / self.tdp_w - self.floor)) ** self.cap_exponent

    def slowdown(self, flops, nbytes, seconds):  # noqa: ANN001, ANN201  (floats or numpy arrays)
        """How many times longer steps of `flops` and `nbytes` per GPU that take `seconds` uncapped take under the
        cap (1.0 without one)."""
        if self.cap_w is None:
            return 1.0
        u_c = flops / self.peak_flops
        u_m = nbytes / self.hbm_bytes_per_s
        total = u_c + u_m  # the step time cancels in the share
        share = np.where(total > 0, u_c / np.where(total > 0, total, 1.0), 0.0)
        return 1.0 + (self.cap_factor - 1.0) * share

    def watts(self, flops: np.ndarray, nbytes: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """Per-GPU draw of steps that took `seconds` (capped time, if a cap slowed them): the same work spread over
        a longer step draws less, and never more than the cap."""
        w = self.uncapped_watts(flops, nbytes, seconds)
        return np.minimum(w, self.cap_w) if self.cap_w is not None else w
