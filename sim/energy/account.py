"""A run's energy and money, from what its replicas did step by step (Replica.work) and the power model.

Per replica and per step (or fast-forwarded run of steps): the GPUs draw the model's busy power for the step's
work (sim/energy/power.py), spread evenly over the replica's GPUs; between steps they draw the card's idle power.
Each node adds its card's non-GPU draw for the whole span, shared by its GPUs (a plan on some of a node's GPUs is
charged their share); the facility multiplies everything by its PUE. The span
is the run's: first arrival to last completion, as throughput is measured.

Money: the GPUs' hours over the span at their hourly price, plus the facility's energy at the electricity price
(set the electricity price to 0 where the GPU price already includes power, as a cloud's does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.energy.power import PowerModel
from sim.energy.work import StepWork

J_PER_KWH = 3.6e6
FIELDS = 5  # sim.serving.replica.WORK_FIELDS


@dataclass(frozen=True)
class PoolEnergy:
    """One pool's replicas and what prices them."""

    replicas: Sequence  # sim.serving.replica.Replica
    power: PowerModel
    work: StepWork
    gpus_per_replica: int
    usd_per_gpu_hour: float
    nodes: float  # the pool's share of nodes: its GPUs over the GPUs a node holds
    node_overhead_w: float


def replica_watts(rep, pool: PoolEnergy) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(per-GPU watts, busy seconds) of each of the replica's recorded steps (runs)."""
    w = np.frombuffer(rep.work, dtype=np.float64).reshape(-1, FIELDS)
    busy, steps, tokens, pairs, kv = w.T
    g = pool.gpus_per_replica
    watts = pool.power.watts(pool.work.flops(tokens, pairs) / g, pool.work.bytes(steps, tokens, kv) / g, busy)
    return watts, busy


def energy_summary(pools: Sequence[PoolEnergy], span_s: float, output_tokens: float, finished: int, *,
                   pue: float, electricity_usd_per_kwh: float) -> tuple[dict, dict[int, np.ndarray]]:
    """The run's energy and cost figures, and each replica's per-GPU watts per recorded step (by replica index)."""
    gpu_j, peak, gpus, gpu_usd_per_hour, node_w = 0.0, 0.0, 0, 0.0, 0.0
    per_replica: dict[int, np.ndarray] = {}
    for pool in pools:
        g = pool.gpus_per_replica
        for rep in pool.replicas:
            watts, busy = replica_watts(rep, pool)
            per_replica[rep.index] = watts
            busy_s = float(busy.sum())
            gpu_j += g * (float(np.dot(watts, busy)) if len(busy) else 0.0)
            gpu_j += g * pool.power.idle_w * max(span_s - busy_s, 0.0)
            if len(watts):
                peak = max(peak, float(watts.max()))
        gpus += g * len(pool.replicas)
        gpu_usd_per_hour += g * len(pool.replicas) * pool.usd_per_gpu_hour
        node_w += pool.nodes * pool.node_overhead_w
    it_j = gpu_j + node_w * span_s
    facility_j = it_j * pue
    kwh = facility_j / J_PER_KWH
    hours = span_s / 3600.0
    usd = gpu_usd_per_hour * hours + kwh * electricity_usd_per_kwh
    per = (lambda x, n: x / n if n else None)  # noqa: E731
    out = {
        "energy_kwh": kwh,
        "joules_per_output_token": per(facility_j, output_tokens),
        "avg_power_per_gpu_w": per(gpu_j, gpus * span_s) if span_s > 0 else None,
        "peak_power_per_gpu_w": peak,
        "node_overhead_w": node_w,
        "pue": pue,
        "facility_power_kw": facility_j / span_s / 1e3 if span_s > 0 else None,
        "gpu_usd_per_hour": gpu_usd_per_hour,
        "cluster_usd_per_hour": usd / hours if hours > 0 else None,
        "usd_per_mtok": per(usd * 1e6, output_tokens),
        "usd_per_request": per(usd, finished),
        "usd_total": usd,
        "electricity_usd_per_kwh": electricity_usd_per_kwh,
    }
    return {k: (v if v is None or math.isfinite(v) else None) for k, v in out.items()}, per_replica
