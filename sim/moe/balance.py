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

import numpy as np

from sim.cost.iteration import ACT_BYTES, DISPATCH_BYTES, IterationCost
from sim.moe import exflow, llep, placement
from sim.moe.policy import POLICIES, Policy, parse_policy  # noqa: F401  (re-exported)
from sim.moe.routing import Routing

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
        self.contiguous = standard
        # Bytes per copy-element of each all-to-all of a layer: an FP8 dispatch and a BF16 combine (DeepEP).
        self.a2a_calls: tuple[float, ...] = (DISPATCH_BYTES, ACT_BYTES)
        self.kv_gather_bytes = 0.0  # per token and MoE layer, ExFlow's coherent context
        self.cross_gpu_share = (gpus - 1) / gpus  # of the copies' hops, with every token going home between layers
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
            # Context-coherent EP (our reading of ExFlow): every GPU keeps every sequence's KV, so a token runs
            # attention wherever its last expert left it and hops straight on to its next expert: one BF16
            # all-to-all per layer instead of a dispatch and a combine, and only the hops that change GPU cross
            # the fabric. The new tokens' KV is copied to every GPU at each layer; the KV memory this costs is
            # charged in sim/parallel/feasibility.py.
            self.placement = exflow.place(routing, gpus)
            self.cross_gpu_share = exflow.cross_gpu_share(routing, self.placement)
            self.a2a_calls = (ACT_BYTES * self.cross_gpu_share / ((gpus - 1) / gpus),)
            self.kv_gather_bytes = cost.model.kv_bytes_per_token_per_layer

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
        before = self.contiguous.gpu_loads(counts)
        held = self.placement.experts_per_gpu()  # [layers, gpus]
        compute, times, lent = [], [], []
        ebytes = expert_bytes(cost)
        link = cost.cluster.gpu.scale_up_gbps * 1e9
        # Experts with work on each GPU: a copy of an expert with share s of its c token copies gets at least one
        # with probability 1 - (1 - s)^c (1 when it is the expert's only copy and c > 0); LLEP's borrowed experts
        # work on what they were lent.
        base = self.contiguous if self.policy.kind == "llep" else self.placement
        active = (1.0 - (1.0 - base.share) ** counts[:, :, None]).sum(axis=1) + received
        for layer in range(loads.shape[0]):
            busiest = loads[layer].max()
            work = max(cost.expert_time(float(c), float(a)) for c, a in zip(loads[layer], active[layer]))
            comm = sum(cost.alltoall(busiest * h * b) for b in self.a2a_calls) if cost.alltoall else 0.0
            lend = received[layer].max() * ebytes / link
            lent.append(lend)
            compute.append(work + lend)
            times.append(work + comm + lend)
        mean = loads.mean(axis=1)
        safe = np.where(mean > 0, mean, 1.0)
        imbalance = loads.max(axis=1) / safe
        # Peak memory per GPU: the experts it hosts in every layer, plus the one layer at a time whose received
        # copies (FP8 in, BF16 out) and gate/up activations, and any expert weights lent to it (freed after the
        # layer, as LLEP does), are live.
        f = cost.model.moe.expert_intermediate_size
        transient = loads * (h * (1.0 + ACT_BYTES) + 2 * f * ACT_BYTES) + received * ebytes
        peak = (held * ebytes).sum(axis=0) + transient.max(axis=0)
        return {"imbalance": imbalance, "imbalance_before": before.max(axis=1) / safe,
                "busiest": float(loads.max(axis=1).mean()), "busiest_before": float(before.max(axis=1).mean()),
                "compute_s": float(np.mean(compute)), "layer_time_s": np.array(times), "lend_s": float(np.mean(lent)),
                "moved_bytes": float(received.sum() * ebytes), "llep_active_layers": acted,
                "peak_gpu_bytes": float(peak.max())}

    def evaluate(self, tokens: int, batches: int = 8, seed: int = 0) -> dict:
        """The policy on `batches` sampled batches of `tokens` tokens: per-layer means of each figure."""
        rng = np.random.default_rng([seed, 2])
        runs = [self.batch(self.routing.sample(tokens, rng)) for _ in range(batches)]
        per_layer = np.mean([r["imbalance"] for r in runs], axis=0)
        every = self.policy.every
        return {"policy": self.policy.label, "tokens": tokens, "imbalance": float(per_layer.mean()),
                "imbalance_before": float(np.mean([r["imbalance_before"].mean() for r in runs])),
                "busiest": float(np.mean([r["busiest"] for r in runs])),
                "busiest_before": float(np.mean([r["busiest_before"] for r in runs])),
                "compute_s": float(np.mean([r["compute_s"] for r in runs])),
                "rebalance_gb": self.rebalance_bytes / 1e9, "rebalance_s": self.rebalance_s,
                "rebalance_s_per_step": self.rebalance_s / every if every else 0.0,
                "imbalance_per_layer": per_layer.tolist(),
                "layer_time_s": float(np.mean([r["layer_time_s"].mean() for r in runs])),
                "lend_s": float(np.mean([r["lend_s"] for r in runs])),
                "moved_gb_per_batch": float(np.mean([r["moved_bytes"] for r in runs])) / 1e9,
                "llep_active_share": float(np.mean([r["llep_active_layers"] for r in runs])) / len(per_layer),
                "peak_gpu_gb": max(r["peak_gpu_bytes"] for r in runs) / 1e9}


class Profile:
    """A Balancer as the step cost sees it (sim.cost.iteration.ExpertProfile): per MoE layer, the busiest GPU's
    expert work and the copies it receives, as functions of the tokens of a step.

    Each is evaluated on sampled batches of every power-of-two size (the expectation over batches: the mean of the
    per-batch maxima, so a run's mean step time is right; its step-to-step spread is not simulated), made
    non-decreasing across sizes (a bigger batch never has a lighter busiest GPU; sampling noise, or a policy that
    switches on at some size, such as LLEP, could otherwise make more tokens cost less), and interpolated linearly
    in between."""

    def __init__(self, balancer: Balancer, batches: int = 4, seed: int = 0) -> None:
        self.balancer, self.batches, self.seed = balancer, batches, seed
        self.a2a_calls = balancer.a2a_calls
        self.kv_gather_bytes = balancer.kv_gather_bytes
        layers = balancer.routing.probs.shape[0]
        self._per_step = balancer.rebalance_s / balancer.policy.every / layers if balancer.policy.every else 0.0
        self._rows: list[tuple[float, float, float]] = []  # bucket j (2**j tokens): compute_s, received, before

    def _row(self, j: int) -> tuple[float, float, float]:
        rows = self._rows
        while len(rows) <= j:
            r = self.balancer.evaluate(1 << len(rows), self.batches, self.seed)
            row = (r["compute_s"] + self._per_step, r["busiest"], r["busiest_before"])
            if rows:
                row = tuple(max(a, b) for a, b in zip(row, rows[-1]))
            rows.append(row)
        return rows[j]

    def _at(self, tokens: int, field: int) -> float:
        if tokens <= 0:
            return 0.0
        j = tokens.bit_length() - 1
        low = self._row(j)[field]
        if tokens == 1 << j:
            return low
        high = self._row(j + 1)[field]
        return low + (high - low) * (tokens - (1 << j)) / (1 << j)

    def compute_s(self, tokens: int) -> float:
        return self._at(tokens, 0)

    def received(self, tokens: int) -> float:
        return self._at(tokens, 1)

    def received_before(self, tokens: int) -> float:
        """The busiest GPU's copies under plain contiguous EP (what the policy balances away)."""
        return self._at(tokens, 2)

    def a2a_bytes_per_token(self) -> float:
        """Bytes one token's copies move between GPUs over all MoE layers of a forward pass (dispatch and combine;
        ExFlow's single hop and its KV copies)."""
        b = self.balancer
        h, k, ep = b.cost.model.hidden_size, b.routing.top_k, b.gpus
        per_layer = k * h * sum(b.a2a_calls) * (ep - 1) / ep + b.kv_gather_bytes * (ep - 1)
        return per_layer * b.routing.layers
