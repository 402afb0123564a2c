"""Which experts the tokens of a batch choose, layer by layer: uniform, skewed, measured, hot-expert, with optional
inter-layer affinity.

A routing is the share of token copies each expert receives per MoE layer (`probs`, rows summing to 1; a token
makes `top_k` copies). Batches are sampled from it (a multinomial per layer), so the imbalance of a small batch is
larger than that of a big one, as in serving. Affinity (as ExFlow measures it): with probability `affinity` a copy
goes at layer l+1 to the expert that `successor[l]` pairs with its expert at layer l, otherwise it is routed afresh.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.core.json_file import read_json
from sim.core.paths import data_dir
from sim.errors import FleetsimError


@dataclass(frozen=True)
class Routing:
    probs: np.ndarray  # [layers, experts]
    top_k: int
    affinity: float = 0.0
    successor: np.ndarray | None = None  # [layers - 1, experts]: the expert each one leads to at the next layer
    name: str = "uniform"

    @property
    def layers(self) -> int:
        return self.probs.shape[0]

    @property
    def experts(self) -> int:
        return self.probs.shape[1]

    def sample(self, tokens: int, rng: np.random.Generator) -> np.ndarray:
        """Token copies per expert for one batch of `tokens` tokens: [layers, experts] integers."""
        n = tokens * self.top_k
        return np.stack([rng.multinomial(n, p) for p in self.probs])

    def distinct_experts(self, tokens: int) -> float:
        """Expected number of experts a batch of `tokens` tokens hits per layer (mean over layers): each of its
        tokens x top_k copies picks expert e with probability p_e."""
        return float((1.0 - (1.0 - self.probs) ** (tokens * self.top_k)).sum(axis=1).mean())

    def transitions(self, layer: int) -> np.ndarray:
        """Joint share of copies going from expert a at `layer` to expert b at `layer + 1`: [experts, experts]."""
        p, q = self.probs[layer], self.probs[layer + 1]
        joint = (1.0 - self.affinity) * np.outer(p, q) if self.affinity < 1 else np.zeros((len(p), len(q)))
        if self.affinity > 0 and self.successor is not None:
            joint[np.arange(len(p)), self.successor[layer]] += self.affinity * p
        return joint


def uniform(layers: int, experts: int, top_k: int) -> Routing:
    return Routing(np.full((layers, experts), 1.0 / experts), top_k, name="uniform")


def zipf(layers: int, experts: int, top_k: int, s: float, seed: int = 0) -> Routing:
    """Expert popularity falls as 1/rank^s; each layer ranks its experts in its own random order."""
    rng = np.random.default_rng(seed)
    base = 1.0 / np.arange(1, experts + 1) ** s
    probs = np.stack([rng.permutation(base) for _ in range(layers)])
    return Routing(probs / probs.sum(1, keepdims=True), top_k, name=f"zipf:{s:g}")


def dirichlet(layers: int, experts: int, top_k: int, alpha: float, seed: int = 0) -> Routing:
    """Expert shares drawn from a symmetric Dirichlet(alpha): small alpha, strong skew."""
    rng = np.random.default_rng(seed)
    return Routing(rng.dirichlet(np.full(experts, alpha), layers), top_k, name=f"dirichlet:{alpha:g}")


def hot(layers: int, experts: int, top_k: int, fraction: float, num_hot: int, seed: int = 0,
        packed: bool = False) -> Routing:
    """`fraction` of the copies go to `num_hot` experts per layer, the rest spread evenly over the others: the
    imbalance LLEP's benchmark sets up (e.g. 30% of tokens on 4 of 128 experts). The hot experts are chosen at
    random per layer, or `packed` as the first ones (one GPU under contiguous EP: the worst case)."""
    rng = np.random.default_rng(seed)
    probs = np.full((layers, experts), (1.0 - fraction) / (experts - num_hot))
    for row in probs:
        row[np.arange(num_hot) if packed else rng.choice(experts, num_hot, replace=False)] = fraction / num_hot
    return Routing(probs, top_k, name=f"hot:{fraction:g}:{num_hot}" + (":packed" if packed else ""))


def with_affinity(routing: Routing, affinity: float, seed: int = 0) -> Routing:
    """The same first layer, each later layer reached through a random pairing of experts with weight `affinity`;
    later layers' shares follow from the chain."""
    if not 0.0 <= affinity <= 1.0:
        raise FleetsimError(f"moe affinity: expected a probability in [0, 1], got {affinity!r}")
    rng = np.random.default_rng(seed)
    succ = np.stack([rng.permutation(routing.experts) for _ in range(routing.layers - 1)])
    probs = routing.probs.copy()
    for layer in range(routing.layers - 1):
        nxt = (1.0 - affinity) * routing.probs[layer + 1]
        np.add.at(nxt, succ[layer], affinity * probs[layer])
        probs[layer + 1] = nxt
    return Routing(probs, routing.top_k, affinity, succ, f"{routing.name}+affinity:{affinity:g}")


def measured(path: str | Path, group: str | None = None) -> Routing:
    """Per-layer expert selection frequencies from the GPT-OSS expert-fingerprinting files (AmanPriyanshu/
    GPT-OSS-MoE-ExpertFingerprinting, Apache-2.0): `count_frequency` per expert sums to top-k per layer."""
    path = Path(path)
    doc = read_json(path)
    if not isinstance(doc, dict) or not doc:
        raise FleetsimError(f"{path}: expected an object of groups with 'think_expert_analytics'")
    if group is None:  # the group with the most samples
        group = max(doc, key=lambda g: doc[g].get("sample_count", 0) if isinstance(doc[g], dict) else -1)
    if group not in doc or "think_expert_analytics" not in doc[group]:
        raise FleetsimError(f"{path}: no group '{group}' with 'think_expert_analytics'; groups: {', '.join(doc)}")
    layers = doc[group]["think_expert_analytics"]
    names = sorted(layers, key=lambda name: int(name.split("_")[-1]))
    experts = 1 + max(int(e) for name in names for e in layers[name])
    freq = np.zeros((len(names), experts))
    for i, name in enumerate(names):
        for e, stats in layers[name].items():
            freq[i, int(e)] = stats["count_frequency"]
    top_k = int(round(freq.sum(1).mean()))
    return Routing(freq / freq.sum(1, keepdims=True), top_k, name=f"measured:{path.stem}")


SHIPPED_ROUTING = "gpt_oss_20b_routing.json"


def _finite(text: str, low: float, high: float) -> float:
    """A routing parameter: a number within [low, high] (NaN and infinity refused); ValueError otherwise."""
    value = float(text)
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(text)
    return value


def parse(spec: str, layers: int, experts: int, top_k: int, seed: int = 0) -> Routing:
    """uniform | zipf:S | dirichlet:ALPHA | hot:FRACTION:NUM_HOT[:packed] | measured[:PATH], optionally +affinity:P."""
    spec = str(spec)
    base, _, aff = spec.partition("+affinity:")
    kind, _, arg = base.partition(":")
    try:
        if kind == "uniform" and not arg:
            r = uniform(layers, experts, top_k)
        elif kind == "zipf":
            r = zipf(layers, experts, top_k, _finite(arg, 0.0, 100.0), seed)
        elif kind == "dirichlet":
            r = dirichlet(layers, experts, top_k, _finite(arg, 1e-6, 1e6), seed)
        elif kind == "hot":
            frac, num, *rest = arg.split(":")
            if not 0 < float(frac) < 1 or not 0 < int(num) < experts or rest not in ([], ["packed"]):
                raise ValueError
            r = hot(layers, experts, top_k, float(frac), int(num), seed, packed=bool(rest))
        elif kind == "measured":
            # Bare `measured`: the shipped gpt-oss-20b frequencies (traces/README.md gives their provenance).
            r = measured(arg or data_dir("traces") / SHIPPED_ROUTING)
            if r.experts != experts:
                raise FleetsimError(f"moe routing {spec}: the file has {r.experts} experts, the model {experts}")
            if r.layers != layers:  # repeat or cut the measured layers to the model's depth
                r = Routing(np.resize(r.probs, (layers, experts)), top_k, name=r.name)
        else:
            raise ValueError
        return with_affinity(r, _finite(aff, 0.0, 1.0), seed) if aff else r
    except (ValueError, TypeError):
        raise FleetsimError(f"moe routing: expected uniform, zipf:S, dirichlet:ALPHA, hot:FRACTION:NUM_HOT[:packed] or "
                            f"measured[:PATH] (optionally +affinity:P), got '{spec}'") from None
