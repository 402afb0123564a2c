"""The work of engine steps in FLOPs and bytes, from their shape: what the power model needs to know how busy the
GPUs' compute units and memory were.

A step of T tokens multiplies them through the active weights (2 FLOPs per parameter per token) and through
attention (QK and PV: 4 x heads x head_dim FLOPs per query-key pair per full-attention layer); it reads the weights
once (an MoE layer only the experts its tokens choose) and the KV cache of every token it attends to or writes.
The work is spread evenly over the replica's GPUs (an approximation: attention-DP ranks and pipeline stages are not
always equally loaded). MLA and sliding windows are priced as full attention over the model card's head shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sim.model.arch import ModelArch
from sim.model.dtypes import dtype_bytes

if TYPE_CHECKING:
    from sim.cost.step_plan import RankBatch


@dataclass(frozen=True)
class StepWork:
    flops_per_token: float  # dense GEMMs and the active experts, per token
    flops_per_pair: float  # attention, per (query, key) pair, all layers
    dense_bytes: float  # weights every step reads
    expert_bytes: float  # routed experts' weights, of which a step reads those its tokens choose
    expert_choice: float  # top_k / num_experts (0 for a dense model)
    kv_bytes_per_token: float  # all layers

    @classmethod
    def of(cls, model: ModelArch) -> StepWork:
        expert_bytes, choice = 0.0, 0.0
        if model.moe is not None:
            per_param = dtype_bytes(model.expert_weight_dtype or model.weight_dtype, "expert_weight_dtype")
            expert_bytes = model.routed_expert_params_total * per_param
            choice = model.moe.top_k / model.moe.num_experts
        return cls(2.0 * model.params_active, 4.0 * model.num_heads * model.head_dim * model.full_attention_layers,
                   model.weight_bytes - expert_bytes, expert_bytes, choice, model.kv_bytes_per_token)

    def flops(self, tokens: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        return self.flops_per_token * tokens + self.flops_per_pair * pairs

    def bytes(self, steps: np.ndarray, tokens: np.ndarray, kv_tokens: np.ndarray) -> np.ndarray:
        """Bytes read over `steps` steps of `tokens` tokens in all: weights once a step, KV of `kv_tokens`."""
        weights = self.dense_bytes * steps
        if self.expert_bytes:
            per_step = tokens / np.maximum(steps, 1)
            weights = weights + self.expert_bytes * steps * (1.0 - (1.0 - self.expert_choice) ** per_step)
        return weights + self.kv_bytes_per_token * kv_tokens


def prefill_pairs(chunk: int, context: int) -> float:
    """Query-key pairs of a prefill chunk of `chunk` new tokens after `context` cached ones (causal)."""
    return chunk * (context + (chunk + 1) / 2.0)


def rank_work(rank: RankBatch) -> tuple[int, float, int]:
    """(tokens, attention pairs, KV tokens read or written) of one attention rank's share of a step: its decodes
    attend to their KV sum; each prefill chunk to its cached context and itself."""
    pairs, kv = float(rank.kv_sum), rank.kv_sum
    tokens = rank.decodes
    for c, ctx in rank.chunks:
        tokens += c
        pairs += c * (ctx + (c + 1) / 2.0)  # prefill_pairs, inlined: the engine loop runs this every mixed step
        kv += c + ctx
    return tokens, pairs, kv
