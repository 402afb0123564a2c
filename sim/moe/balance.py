"""Expert-parallel load balance of one model on one plan, under a routing and a placement/balancing policy.

Batches of a given size are sampled from the routing; each policy turns a batch's expert loads into per-GPU loads.
Reported per policy: imbalance (busiest GPU's copies over the mean, per layer), MoE layer time (the busiest GPU's
grouped GEMM, the all-to-alls sized by the busiest receiver, plus weights moved), bytes moved, peak memory per GPU
(expert weights held plus the activations of the copies received).

Policies: ep (contiguous), eplb:R[:hierarchical][:K] (R redundant experts, placed from the loads of `window` earlier
batches, and re-placed every K steps from the latest window: the weights that change GPU are copied meanwhile),
llep[:ALPHA:M:LAMBDA], exflow (affinity-aware placement; see sim/moe/exflow.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.cost.iteration import ACT_BYTES, IterationCost
from sim.errors import FleetsimError
from sim.moe import exflow, llep, placement
from sim.moe.routing import Routing

POLICIES = ("ep", "eplb:R[:hierarchical][:K]", "llep", "llep:ALPHA:M:LAMBDA", "exflow")


@dataclass(frozen=True)
class Policy:
    kind: str  # ep, eplb, llep, exflow
    redundant: int = 0
    hierarchical: bool = False
    llep: llep.LLEPConfig | None = None
    every: int = 0  # EPLB: steps between re-placements (0: placed once)

    @property
    def label(self) -> str:
        if self.kind == "eplb":
            return (f"eplb:{self.redundant}" + (":hierarchical" if self.hierarchical else "")
                    + (f":{self.every}" if self.every else ""))
        if self.kind == "llep" and self.llep != llep.LLEPConfig():
            c = self.llep
            return f"llep:{c.alpha:g}:{c.min_chunk}:{c.threshold:g}"
        return self.kind


def parse_policy(spec: str) -> Policy:
    kind, *args = str(spec).split(":")
    try:
        if kind in ("ep", "exflow") and not args:
            return Policy(kind)
        if kind == "eplb" and args and int(args[0]) >= 0:
            hierarchical = len(args) > 1 and args[1] == "hierarchical"
            rest = args[1 + hierarchical:]
            if not rest:
                return Policy("eplb", int(args[0]), hierarchical)
            if len(rest) == 1 and int(rest[0]) > 0:
                return Policy("eplb", int(args[0]), hierarchical, every=int(rest[0]))
        if kind == "llep" and len(args) in (0, 3):
            cfg = llep.LLEPConfig(float(args[0]), int(args[1]), float(args[2])) if args else llep.LLEPConfig()
            return Policy("llep", llep=cfg)
    except ValueError:
        pass
    raise FleetsimError(f"moe policy: expected one of {', '.join(POLICIES)}, got '{spec}'")


def expert_bytes(cost: IterationCost) -> float:
    """Weights of one routed expert (gate, up and down projections)."""
    m = cost.model
    return 3 * m.hidden_size * m.moe.expert_intermediate_size * cost.ebytes


class Balancer:
    """A policy applied to a model's MoE layers on `gpus` expert-parallel GPUs."""

    def __init__(self, policy: Policy, routing: Routing, cost: IterationCost, gpus: int, tokens_hint: int = 4096,
                 window: int = 16, seed: int = 0, gpus_per_node: int = 8) -> None:
        self.policy, self.routing, self.cost, self.gpus = policy, routing, cost, gpus
        layers, experts = routing.probs.shape
        standard = placement.contiguous(layers, experts, gpus)
        self.home = standard.share[0].argmax(axis=1)  # each expert's own GPU under standard EP (LLEP's start)
        self.placement = standard
        self.rebalance_bytes = 0.0  # EPLB re-placement: weights copied, all GPUs together
        self.rebalance_s = 0.0  # ... and the time to copy them (the busiest receiver's bytes over its link)
        if policy.kind == "eplb":
            # Placed from what the previous `window` batches routed, as EPLB rebalances from observed loads.
            rng = np.random.default_rng([seed, 1])
            nodes = gpus_per_node if policy.hierarchical else None

            def observed() -> placement.Placement:
                seen = sum(routing.sample(tokens_hint, rng) for _ in range(window))
                return placement.eplb(seen, gpus, policy.redundant, nodes)

            self.placement = observed()
            if policy.every:
                # A re-placement from a fresh window moves whatever its sampled loads reorder (the routing is
                # stationary here, so this is the churn EPLB pays for following noise); averaged over a few.
                ebytes = expert_bytes(cost)
                link = (cost.cluster.gpu.scale_up_gbps if gpus <= gpus_per_node
                        else cost.cluster.fabric.gbps_per_gpu) * 1e9
                prev, totals, slowest = self.placement, [], []
                for _ in range(3):
                    nxt = observed()
                    new = ((nxt.share > 0) & ~(prev.share > 0)).sum(axis=1).sum(axis=0) * ebytes  # per GPU
                    totals.append(new.sum())
                    slowest.append(new.max() / link)
                    prev = nxt
                self.rebalance_bytes = float(np.mean(totals))
                self.rebalance_s = float(np.mean(slowest))
        elif policy.kind == "exflow":
            self.placement = exflow.place(routing, gpus)

    def batch(self, counts: np.ndarray) -> dict:
        """One sampled batch ([layers, experts] copies) through every MoE layer."""
        cost, h = self.cost, self.cost.model.hidden_size
        if self.policy.kind == "llep":
            loads = np.empty((counts.shape[0], self.gpus))
            received = np.zeros((counts.shape[0], self.gpus))
            acted = 0
            for layer, c in enumerate(counts):
                loads[layer], received[layer], on = llep.assign(c, self.home, self.gpus, self.policy.llep)
                acted += on
        else:
            loads = self.placement.gpu_loads(counts)
            received = np.zeros_like(loads)
            acted = 0
        held = self.placement.experts_per_gpu()  # [layers, gpus]
        times, lent = [], []
        ebytes = expert_bytes(cost)
        link = cost.cluster.gpu.scale_up_gbps * 1e9
        active = np.minimum(held + received, np.maximum(1.0, loads))  # experts with work on each GPU
        for layer in range(loads.shape[0]):
            busiest = loads[layer].max()
            compute = max(cost.expert_time(float(c), float(a)) for c, a in zip(loads[layer], active[layer]))
            comm = cost.alltoall(busiest * h * 1.0) + cost.alltoall(busiest * h * ACT_BYTES) if cost.alltoall else 0.0
            lend = received[layer].max() * ebytes / link
            lent.append(lend)
            times.append(compute + comm + lend)
        mean = loads.mean(axis=1, keepdims=True)
        imbalance = (loads.max(axis=1) / np.where(mean[:, 0] > 0, mean[:, 0], 1.0))
        # Peak memory per GPU: the experts it hosts in every layer, plus the one layer at a time whose received
        # copies (FP8 in, BF16 out) and gate/up activations, and any expert weights lent to it (freed after the
        # layer, as LLEP does), are live.
        f = cost.model.moe.expert_intermediate_size
        transient = loads * (h * (1.0 + ACT_BYTES) + 2 * f * ACT_BYTES) + received * ebytes
        peak = (held * ebytes).sum(axis=0) + transient.max(axis=0)
        return {"imbalance": imbalance, "layer_time_s": np.array(times), "lend_s": float(np.mean(lent)),
                "moved_bytes": float(received.sum() * ebytes), "llep_active_layers": acted,
                "peak_gpu_bytes": float(peak.max())}

    def evaluate(self, tokens: int, batches: int = 8, seed: int = 0) -> dict:
        rng = np.random.default_rng([seed, 2])
        runs = [self.batch(self.routing.sample(tokens, rng)) for _ in range(batches)]
        per_layer = np.mean([r["imbalance"] for r in runs], axis=0)
        every = self.policy.every
        return {"policy": self.policy.label, "tokens": tokens, "imbalance": float(per_layer.mean()),
                "rebalance_gb": self.rebalance_bytes / 1e9, "rebalance_s": self.rebalance_s,
                "rebalance_s_per_step": self.rebalance_s / every if every else 0.0,
                "imbalance_per_layer": per_layer.tolist(),
                "layer_time_s": float(np.mean([r["layer_time_s"].mean() for r in runs])),
                "lend_s": float(np.mean([r["lend_s"] for r in runs])),
                "moved_gb_per_batch": float(np.mean([r["moved_bytes"] for r in runs])) / 1e9,
                "llep_active_share": float(np.mean([r["llep_active_layers"] for r in runs])) / len(per_layer),
                "peak_gpu_gb": max(r["peak_gpu_bytes"] for r in runs) / 1e9}


def step_balance(balancer: Balancer, batches: int = 4, seed: int = 0):  # noqa: ANN201
    """The IterationCost hook: tokens in a step -> (busiest GPU's load over the mean, extra seconds per MoE layer:
    weights lent, and EPLB's periodic re-placement spread over the steps between two), evaluated once per
    power-of-two batch size (the imbalance depends on the batch size).

    The imbalance is the expectation over sampled batches of that size (the mean of the per-batch maxima, not the
    max of mean loads), so a run's mean step time is right; the step-to-step spread around it is not simulated."""
    memo: dict[int, tuple[float, float]] = {}
    layers = balancer.routing.probs.shape[0]

    def balance(tokens: float) -> tuple[float, float]:
        bucket = 1 << max(0, int(round(np.log2(max(tokens, 1.0)))))
        if bucket not in memo:
            r = balancer.evaluate(bucket, batches, seed)
            memo[bucket] = (r["imbalance"], r["lend_s"] + r["rebalance_s_per_step"] / layers)
        return memo[bucket]

    return balance
