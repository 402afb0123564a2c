"""ExFlow-style affinity-aware expert placement (Yao et al., "Exploiting Inter-Layer Expert Affinity for
Accelerating Mixture-of-Experts Model Inference", arXiv:2401.08383).

With the attention context replicated on every GPU, a token need not return home between MoE layers: it travels
straight from its expert at layer l to its expert at layer l+1 (one all-to-all per layer instead of two), and it
does not travel at all when both experts are on the same GPU. Placing, layer after layer, each expert on the GPU
that sends it the most copies keeps those hops local. Each layer's placement is an assignment of experts to GPU
slots (E/G per GPU) maximising the copies that stay: solved exactly, as an integer program (scipy.optimize.milp)
when small, else as a linear assignment over slots; across layers the procedure is greedy.
"""

from __future__ import annotations

import numpy as np

from sim.moe.placement import Placement
from sim.moe.routing import Routing

MILP_MAX_VARIABLES = 2048


def _assign(gain: np.ndarray, per_gpu: int) -> np.ndarray:
    """Each expert's GPU maximising the summed gain[expert, gpu], every GPU holding `per_gpu` experts."""
    # scipy.optimize costs half a second to import: only a run that places experts by ExFlow pays for it.
    from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp

    experts, gpus = gain.shape
    if experts * gpus <= MILP_MAX_VARIABLES:
        a_one = np.kron(np.eye(experts), np.ones(gpus))  # each expert on exactly one GPU
        a_cap = np.kron(np.ones(experts), np.eye(gpus))  # each GPU holds per_gpu experts
        res = milp(-gain.ravel(), integrality=np.ones(experts * gpus),
                   constraints=[LinearConstraint(a_one, 1, 1), LinearConstraint(a_cap, per_gpu, per_gpu)],
                   bounds=Bounds(0, 1))
        if res.success:
            return res.x.reshape(experts, gpus).argmax(1)
    rows, cols = linear_sum_assignment(-np.repeat(gain, per_gpu, axis=1))
    out = np.empty(experts, dtype=int)
    out[rows] = cols // per_gpu
    return out


def place(routing: Routing, gpus: int) -> Placement:
    layers, experts = routing.probs.shape
    per_gpu = experts // gpus
    where = np.empty((layers, experts), dtype=int)
    where[0] = np.arange(experts) // per_gpu
    for layer in range(layers - 1):
        flow = routing.transitions(layer)  # [from expert, to expert]
        from_gpu = np.zeros((gpus, experts))
        np.add.at(from_gpu, where[layer], flow)
        where[layer + 1] = _assign(from_gpu.T, per_gpu)
    share = np.zeros((layers, experts, gpus))
    for layer in range(layers):
        share[layer, np.arange(experts), where[layer]] = 1.0
    return Placement(share, "exflow")


def cross_gpu_share(routing: Routing, placement: Placement) -> float:
    """Share of the copies' layer-to-layer hops that leave their GPU, averaged over layers."""
    shares = []
    for layer in range(routing.layers - 1):
        flow = routing.transitions(layer)
        a = placement.share[layer].argmax(1)
        b = placement.share[layer + 1].argmax(1)
        shares.append(flow[a[:, None] != b[None, :]].sum() / flow.sum())
    return float(np.mean(shares))
