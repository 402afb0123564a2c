"""Per-GPU memory of a replica: weights, activation reserve and what is left for the paged KV cache."""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import FleetsimError
from sim.hardware.specs import GPUSpec
from sim.model.arch import ModelArch
from sim.model.dtypes import dtype_bytes
from sim.parallel.plan import Plan

GIB = 2**30
# Memory outside PyTorch's allocator (CUDA context, cuBLAS workspaces) per GPU: vLLM V1's memory profile of
# Llama-3.1-8B on one 80 GB GPU logs "non_torch_memory takes 0.35GiB" (and "PyTorch activation peak memory takes
# 1.24GiB" at the default 8,192-token budget; "GPU KV cache size: 447,088 tokens"), tests/test_plans.py reproduces
# it. With tensor parallelism NCCL's and the custom all-reduce's buffers add to it: 0.5 GiB more is our assumption;
# vLLM 0.10.1's logs of Qwen2-7B on A100 80GB at TP1 and TP2 (tests/test_plans.py) put the KV cache within 0.3%
# of what it leaves at TP2, though those GPUs ran without the custom all-reduce (no P2P).
NON_TORCH_BYTES = 0.35 * GIB
NON_TORCH_TP_BYTES = 0.5 * GIB


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    usable_bytes: float
    weight_bytes: float
    activation_bytes: float
    kv_bytes: float
    kv_bytes_per_token: float  # on one GPU of the replica
    block_size: int
    blocks_override: int | None = None

    @property
    def num_blocks(self) -> int:
        """KV blocks of one attention rank (each rank of a data-parallel-attention replica caches its own
        sequences, as each vLLM data-parallel engine does)."""
        if self.blocks_override is not None:
            return self.blocks_override
        return int(self.kv_bytes // (self.kv_bytes_per_token * self.block_size))

    @property
    def token_capacity(self) -> int:
        return self.num_blocks * self.block_size


def kv_bytes_per_token_per_gpu(model: ModelArch, plan: Plan) -> float:
    """KV heads are split across TP ranks (replicated once TP exceeds them; MLA's latent is replicated), layers across
    pipeline stages."""
    if model.mla:
        share = 1.0
    else:
        share = max(1, model.num_kv_heads // plan.tp) / model.num_kv_heads
    return model.kv_bytes_per_token * share / plan.pp


def activation_reserve(model: ModelArch, plan: Plan, max_batched_tokens: int, max_num_seqs: int) -> float:
    """What vLLM's memory profile finds besides the weights: the activation peak of a dummy step of
    max_num_batched_tokens tokens and of sampling max_num_seqs sequences, plus non-PyTorch memory.

    The peak lives in the MLP: its gate/up output (2 x intermediate) and activation output (1 x), beside the QKV
    projection's output and about four hidden-size buffers (residual, normed input, attention output, MLP output),
    in BF16; sampling holds FP32 logits and probabilities over the vocabulary slice."""
    ffn = model.intermediate_size if model.moe is None else model.moe.expert_intermediate_size * model.moe.top_k
    ffn_local = ffn / plan.tp if plan.ep == 1 else ffn  # under EP each expert is whole on its GPU
    qkv_local = (model.q_dim + 2 * model.num_kv_heads * model.head_dim) / plan.tp
    per_token = (3 * ffn_local + qkv_local + 4 * model.hidden_size) * 2
    logits = max_num_seqs * model.vocab_size / plan.tp * 4 * 2
    non_torch = NON_TORCH_BYTES + (NON_TORCH_TP_BYTES if plan.gpus_per_replica > 1 else 0.0)
    return max_batched_tokens * per_token + logits + non_torch


def memory_budget(model: ModelArch, gpu: GPUSpec, plan: Plan, *, gpu_memory_utilization: float, block_size: int,
                  max_batched_tokens: int, max_num_seqs: int, blocks_override: int | None = None,
                  redundant_experts: int = 0, kv_copies: int = 1) -> MemoryBudget:
    """`redundant_experts`: extra replicas of routed experts per MoE layer (EPLB), spread over the EP GPUs.
    `kv_copies`: GPUs that keep a copy of each cached token (ExFlow's coherent context: every EP GPU)."""
    usable = gpu.hbm_bytes * gpu_memory_utilization
    weights = weight_bytes_per_gpu(model, plan, redundant_experts)
    act = activation_reserve(model, plan, max_batched_tokens, max_num_seqs)
    kv = usable - weights - act
    per_token = kv_bytes_per_token_per_gpu(model, plan) * kv_copies
    if weights > usable:
        raise FleetsimError(
            f"plan {plan.label()} does not fit: {model.name} needs {weights / GIB:.1f} GiB of weights per GPU but "
            f"{gpu.name} offers {usable / GIB:.1f} GiB at gpu_memory_utilization={gpu_memory_utilization}; "
            f"short by {(weights - usable) / GIB:.1f} GiB (raise tp or pp, or use a larger GPU"
            + (f", or fewer than {redundant_experts} redundant experts)" if redundant_experts else ")"))
    if kv < per_token * block_size:
        raise FleetsimError(
            f"plan {plan.label()} does not fit: after {weights / GIB:.1f} GiB of weights and {act / GIB:.1f} GiB of "
            f"activations and non-PyTorch memory per GPU, {max(kv, 0) / GIB:.2f} GiB remain for the KV cache on "
            f"{gpu.name}; short by {(per_token * block_size - kv) / GIB:.2f} GiB for even one KV block (raise tp "
            f"or pp)")
    if blocks_override is not None and blocks_override * block_size * per_token > kv:
        # vLLM takes the override as given and allocates that many blocks (kv_cache_utils.py, "Overriding
        # num_gpu_blocks"): more than the memory left fails at start-up, so no run may pretend it fits.
        raise FleetsimError(
            f"engine.num_gpu_blocks_override={blocks_override:,}: that many blocks need "
            f"{blocks_override * block_size * per_token / GIB:,.1f} GiB of KV per GPU but {max(kv, 0) / GIB:.1f} GiB "
            f"remain on {gpu.name} after weights and activations (plan {plan.label()}); vLLM would fail to allocate "
            f"them: lower the override or leave it unset")
    return MemoryBudget(usable, weights, act, kv, per_token, block_size, blocks_override)


def weight_bytes_per_gpu(model: ModelArch, plan: Plan, redundant_experts: int = 0) -> float:
    """Attention and dense weights split by TP (replicated over attention-DP ranks), routed experts split by EP
    (or by TP without EP), layers by PP. Redundant experts (EPLB) add slots on the EP GPUs: the busiest GPU holds
    ceil((E + R) / ep) experts per MoE layer."""
    if redundant_experts and (model.moe is None or plan.ep == 1):
        raise FleetsimError("redundant experts need a MoE model under expert parallelism (ep > 1)")
    if plan.attn_dp == 1 and plan.ep == 1:
        return model.weight_bytes / (plan.tp * plan.pp)
    wb = dtype_bytes(model.weight_dtype)
    experts = model.routed_expert_params_total * dtype_bytes(model.expert_weight_dtype or model.weight_dtype)
    if plan.ep > 1:
        e = model.moe.num_experts
        slots = -(-(e + redundant_experts) // plan.ep)
        return ((model.weight_bytes - experts) / plan.tp + experts / e * slots) / plan.pp
    # FFN (dense MLPs, routed and shared experts) split over tp x attn_dp; attention and embeddings over tp.
    ffn = experts + model.num_dense_layers * model.dense_mlp_params * wb
    if model.moe is not None:
        ffn += model.num_moe_layers * model.moe.shared_experts * model.expert_params * wb
    return ((model.weight_bytes - ffn) / plan.tp + ffn / (plan.tp * plan.attn_dp)) / plan.pp
