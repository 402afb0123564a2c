"""Whether a plan can run, and with how much KV cache per engine: the one check `run` and `search` share.

A pool is identical replicas of one plan on one GPU type (colocated serving has one pool; prefill/decode
disaggregation has two, possibly of different GPU types). A pool is refused, with one line naming the first reason,
when its TP degree does not fit the model's heads, its PP degree the layers, its EP degree the experts, a balancing
policy the plan, the weights the GPU's memory, or when an engine's KV cache cannot hold the workload's longest
request: vLLM, started with that request's length as max_model_len, would refuse to start (vllm/v1/core/
kv_cache_utils.py, check_enough_kv_cache_memory). A search ranks only plans that pass, and a run of any plan it
ranks passes the same check.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import FleetsimError
from sim.hardware.specs import GPUSpec, NodeSpec
from sim.model.arch import ModelArch
from sim.moe.policy import parse_policy
from sim.parallel.memory import MemoryBudget, memory_budget
from sim.parallel.plan import Plan


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """The engine knobs feasibility depends on (vLLM's names)."""

    gpu_memory_utilization: float
    block_size: int
    max_num_batched_tokens: int
    max_num_seqs: int
    watermark: float = 0.01
    num_gpu_blocks_override: int | None = None


@dataclass(frozen=True, slots=True)
class PoolFit:
    """A pool that can run: its memory per GPU, the KV blocks of each engine (an attention rank's pipeline
    micro-batch) and the longest request an engine holds."""

    plan: Plan
    gpu: GPUSpec
    memory: MemoryBudget
    blocks_per_engine: int
    max_model_len: int


def _heads_problem(model: ModelArch, tp: int) -> str:
    if model.num_heads % tp:
        return f"tp={tp} does not divide {model.name}'s {model.num_heads} attention heads"
    if not model.mla and model.num_kv_heads % tp and tp % model.num_kv_heads:
        return f"tp={tp} neither divides nor is a multiple of {model.name}'s {model.num_kv_heads} KV heads"
    return ""


def structure_problem(model: ModelArch, node: NodeSpec, plan: Plan, moe_policy: str = "ep") -> str:
    """The first reason the plan's shape does not suit the model, the node or the balancing policy ('' if none)."""
    problem = _heads_problem(model, plan.tp)
    if problem:
        return problem
    if model.num_layers % plan.pp:
        return f"pp={plan.pp} does not divide {model.name}'s {model.num_layers} layers"
    if plan.tp_nodes and plan.tp // plan.tp_nodes > node.gpus_per_node:
        return (f"tp_nodes={plan.tp_nodes}: a TP{plan.tp} group needs {plan.tp // plan.tp_nodes} GPUs per node but "
                f"{node.name} has {node.gpus_per_node}")
    if plan.ep > 1 and model.moe is None:
        return f"ep={plan.ep}: {model.name} has no experts (expert parallelism is for MoE models)"
    if plan.ep > 1 and model.moe.num_experts % plan.ep:
        return f"ep={plan.ep} does not divide {model.name}'s {model.moe.num_experts} experts"
    policy = parse_policy(moe_policy)
    if policy.kind != "ep":
        if model.moe is None:
            return f"moe_policy {policy.label}: {model.name} has no experts"
        if plan.ep == 1:
            return f"moe_policy {policy.label}: needs expert parallelism (ep > 1)"
    if policy.kind == "eplb" and (model.moe.num_experts + policy.redundant) % plan.ep:
        return (f"moe_policy {policy.label}: experts + redundant ({model.moe.num_experts} + {policy.redundant}) "
                f"must be a multiple of ep={plan.ep}")
    if policy.kind == "exflow" and plan.tp != 1:
        return (f"moe_policy exflow: needs data-parallel attention with tp=1 (a token attends on whichever GPU its "
                f"last expert ran), got tp={plan.tp}")
    return ""


def fit_pool(model: ModelArch, gpu: GPUSpec, node: NodeSpec, plan: Plan, limits: EngineLimits, *,
             moe_policy: str = "ep", longest_request: int | None = None) -> PoolFit:
    """The pool's memory and KV room, or FleetsimError with the first reason it cannot run. `longest_request`:
    tokens (prompt and output) of the longest request an engine of the pool must hold (capped at the model's
    context: longer ones are rejected by any plan)."""
    problem = structure_problem(model, node, plan, moe_policy)
    if problem:
        raise FleetsimError(problem)
    policy = parse_policy(moe_policy)
    # ExFlow keeps every sequence's KV on every GPU of the expert-parallel group (context coherence).
    kv_copies = plan.attn_dp if policy.kind == "exflow" else 1
    mem = memory_budget(model, gpu, plan, gpu_memory_utilization=limits.gpu_memory_utilization,
                        block_size=limits.block_size, max_batched_tokens=limits.max_num_batched_tokens,
                        max_num_seqs=limits.max_num_seqs, blocks_override=limits.num_gpu_blocks_override,
                        redundant_experts=policy.redundant, kv_copies=kv_copies)
    # Each attention rank caches its own sequences; vLLM v0's pipeline virtual engines split a rank's blocks.
    blocks = mem.num_blocks // plan.pp
    if blocks < 1:
        raise FleetsimError(f"plan {plan.label()}: {mem.num_blocks} KV blocks cannot be shared by {plan.pp} pipeline "
                            f"micro-batches")
    max_len = min(model.max_context, (blocks - int(limits.watermark * blocks)) * limits.block_size)
    if longest_request is not None:
        need = min(longest_request, model.max_context)
        if need > max_len:
            room = (f"num_gpu_blocks_override={limits.num_gpu_blocks_override}" if limits.num_gpu_blocks_override
                    else f"{mem.kv_bytes / 2**30:.1f} GiB of KV per GPU")
            split = f" (a rank's blocks split over {plan.pp} pipeline micro-batches)" if plan.pp > 1 else ""
            raise FleetsimError(
                f"plan {plan.label()} on {gpu.name}: the longest request needs {need:,} tokens of KV cache but an "
                f"engine holds {max_len:,} ({room}){split}; raise tp or gpu_memory_utilization, or cap requests with "
                f"--max-tokens")
    return PoolFit(plan, gpu, mem, blocks, max_len)


def pool_problem(model: ModelArch, gpu: GPUSpec, node: NodeSpec, plan: Plan, limits: EngineLimits, *,
                 moe_policy: str = "ep", longest_request: int | None = None) -> str:
    """fit_pool's first reason as a string ('' when the pool can run), for the search's table."""
    try:
        fit_pool(model, gpu, node, plan, limits, moe_policy=moe_policy, longest_request=longest_request)
    except FleetsimError as exc:
        return str(exc)
    return ""
