"""Fused-MoE latency from measured curves, one per model shape, precision and (TP, EP) split.

The measurements time vLLM's fused MoE layer on one GPU (the routed experts' two grouped GEMMs, the activation and
the weighted sum) for `n` tokens entering the layer, routed evenly among `experts` experts, top-k each, of which the
GPU holds experts / ep, each cut to inter / tp. Even routing gives each copy its own expert until every expert is
busy (n = experts / top_k, where the measured time stops rising steeply), and fuller experts above it. fleetsim
prices a GPU that runs `active` experts with `copies` copies in all as two measured factors: the even-routing layer
with as many experts busy (fewer experts hit, fewer weights read), times how much longer the all-busy layer takes
when each expert carries copies / active copies instead of one (a skewed routing, or the EP rank the balancer
leaves heaviest, is a heavier load). Even routing reads back the measured curve exactly. Between measured token
counts the curve is linear (sim/cost/kernels/curve.py), with the all-busy point added where it was not measured;
past the largest count, scaled by the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from sim.cost.kernels.shipped import shipped
from sim.cost.kernels.curve import LinearCurve

# The table's precision names, by their code in the shipped keys.
MOE_KINDS = ("bfloat16", "fp8", "fp8_block", "w4a16_mxfp4", "int4_wo")
# A weight format -> the measured kernels that serve it in vLLM, preferred first: FP8 MoE checkpoints (Qwen3-FP8,
# DeepSeek) are block-quantized; MXFP4 experts on Hopper run the weight-only Triton/Marlin kernels.
KINDS_FOR = {"bf16": ("bfloat16",), "fp16": ("bfloat16",), "fp8": ("fp8_block", "fp8"),
             "mxfp4": ("w4a16_mxfp4",), "int4": ("int4_wo",)}


@dataclass(frozen=True)
class MoeTable:
    keys: np.ndarray  # [K, 7]: kind code, hidden, inter, topk, experts, tp, ep
    offsets: np.ndarray  # [K + 1] into n and log_s
    n: np.ndarray
    log_s: np.ndarray
    source: str
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {tuple(int(v) for v in k): i for i, k in enumerate(self.keys)})

    def curve(self, dtype: str, hidden: int, inter: int, topk: int, experts: int, tp: int,
              ep: int) -> tuple[LinearCurve, str] | None:
        """The measured curve for this layer split, in the first kernel that serves `dtype`; None if not measured."""
        for kind in KINDS_FOR.get(dtype, ()):
            i = self._index.get((MOE_KINDS.index(kind), hidden, inter, topk, experts, tp, ep))
            if i is not None:
                a, b = self.offsets[i], self.offsets[i + 1]
                return LinearCurve(self.n[a:b], self.log_s[a:b].astype(np.float64)), kind
        return None


@cache
def load_moe_table(name: str) -> MoeTable | None:
    z = shipped(name, "moe_keys")
    if z is None:
        return None
    return MoeTable(z["moe_keys"], z["moe_offsets"], z["moe_n"], z["moe_log_s"], str(z["source"]))
