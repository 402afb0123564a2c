"""The plan space: every DP x TP x PP split of the cluster and every engine-knob setting, with memory feasibility.

A plan that cannot run carries its reason (weights that do not fit, no KV room for the longest request, a TP
degree the model's heads do not allow), so the search reports it instead of silently skipping it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim.errors import FleetsimError
from sim.hardware.specs import GPUSpec, NodeSpec
from sim.model.arch import ModelArch
from sim.moe.balance import parse_policy
from sim.parallel.memory import memory_budget
from sim.parallel.plan import Plan


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """What to vary. None means: every value that makes sense for the model and cluster."""

    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    attn_dp: tuple[int, ...] | None = None  # data-parallel attention ranks per replica (default: powers of two)
    max_num_seqs: tuple[int, ...] = (128, 256)
    max_num_batched_tokens: tuple[int, ...] = (2048, 8192)
    disagg: bool = False  # also try prefill/decode pools (Splitwise, DistServe), every TP and pool ratio
    # A second GPU type: the cluster is two pools, and plans put prefill on one type and decode on the other.
    second_gpu: str | None = None
    second_num_gpus: int = 0
    kv_policies: tuple[str, ...] | None = None  # agent jobs: KV retention policies to try with every plan
    ep: tuple[int, ...] | None = None  # MoE: expert-parallel degrees to keep (1: experts split by TP); None: all
    moe_policies: tuple[str, ...] | None = None  # MoE: balancing policies to try on every EP plan (sim/moe/balance)

    def __post_init__(self) -> None:
        if self.second_gpu and (not isinstance(self.second_num_gpus, int) or self.second_num_gpus < 1):
            raise FleetsimError(f"search space: second_num_gpus must be a positive integer with second_gpu, "
                                f"got {self.second_num_gpus!r}")
        for policy in self.moe_policies or ():
            parse_policy(policy)
        for name in ("tp", "pp", "attn_dp", "ep", "max_num_seqs", "max_num_batched_tokens"):
            values = getattr(self, name)
            if values is not None and (not values or any(not isinstance(v, int) or v < 1 for v in values)):
                raise FleetsimError(f"search space: {name} must be a list of positive integers, got {values!r}")


@dataclass(frozen=True, slots=True)
class Candidate:
    plan: Plan  # colocated replicas; for a disaggregated candidate, the decode pool
    max_num_seqs: int
    max_num_batched_tokens: int
    reason: str = ""  # why it cannot run; empty when feasible
    prefill: Plan | None = None  # the prefill pool of a disaggregated candidate
    prefill_gpu: str = ""  # GPU types of the pools when they differ
    decode_gpu: str = ""
    kv_policy: str = ""  # agent jobs: the KV retention policy tried ("" keeps the scenario's)
    moe_policy: str = ""  # EP plans: the expert balancing policy tried ("" keeps the scenario's)

    @property
    def label(self) -> str:
        kv = f" kv={self.kv_policy}" if self.kv_policy else ""
        kv += f" moe={self.moe_policy}" if self.moe_policy else ""
        if self.prefill is not None:
            at_p = f"@{self.prefill_gpu}" if self.prefill_gpu else ""
            at_d = f"@{self.decode_gpu}" if self.decode_gpu else ""
            return f"P:{self.prefill.label()}{at_p}+D:{self.plan.label()}{at_d}{kv}"
        return self.plan.label() + kv


def _powers_of_two(limit: int) -> list[int]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def _tp_problem(model: ModelArch, tp: int, node: NodeSpec) -> str:
    if model.num_heads % tp:
        return f"TP{tp} does not divide the {model.num_heads} attention heads"
    if not model.mla and model.num_kv_heads % tp and tp % model.num_kv_heads:
        return f"TP{tp} neither divides nor is a multiple of the {model.num_kv_heads} KV heads"
    return ""


def enumerate_candidates(model: ModelArch, gpu: GPUSpec, node: NodeSpec, num_gpus: int, space: SearchSpace, *,
                         gpu_memory_utilization: float, block_size: int, max_request_tokens: int) -> list[Candidate]:
    """Every (plan, knobs) that uses all `num_gpus` GPUs, feasible or with the reason it is not.

    TP stays inside a node where it can (it spans nodes only when larger than a node); each replica needs KV for at
    least one request of `max_request_tokens` tokens."""
    mem = (model, gpu_memory_utilization, block_size, max_request_tokens)
    tps = space.tp or _powers_of_two(num_gpus)
    pps = space.pp or [p for p in _powers_of_two(num_gpus) if model.num_layers % p == 0]
    dps = space.attn_dp or _powers_of_two(num_gpus)
    # Data-parallel attention ranks (1: none) with the FFN split by TP over all their GPUs (APEX's split)...
    layouts = [(tp, pp, a, 1) for tp in tps for pp in pps for a in dps]
    if model.moe is not None:
        # ... or with the experts spread whole over them: EP within the TP group, or DP attention ranks + EP.
        layouts += [(tp, pp, a, tp * a) for tp in tps for pp in pps for a in dps if tp * a > 1]
    if space.ep is not None:
        layouts = [layout for layout in layouts if layout[3] in space.ep]
    out: list[Candidate] = []
    for tp, pp, dp, ep in layouts:
        if num_gpus % (tp * pp * dp):
            continue
        plan = Plan(tp=tp, pp=pp, replicas=num_gpus // (tp * pp * dp), ep=ep, attn_dp=dp)
        static = _tp_problem(model, tp, node)
        if not static and model.num_layers % pp:
            static = f"PP{pp} does not divide the {model.num_layers} layers"
        if not static and ep > 1 and model.moe.num_experts % ep:
            static = f"EP{ep} does not divide the {model.moe.num_experts} experts"
        # A balancing policy acts on expert-parallel GPUs only; plans without EP run the plain split.
        policies = (space.moe_policies or ("",)) if ep > 1 else (("ep",) if space.moe_policies else ("",))
        for policy in policies:
            redundant = parse_policy(policy).redundant if policy else 0
            out += _with_knobs(space, static, [(gpu, plan)], mem,
                               lambda seqs, tokens, reason, plan=plan, policy=policy:
                               Candidate(plan, seqs, tokens, reason, moe_policy=policy), redundant)
    if space.disagg:
        splits = [(gpu, n_p, gpu, num_gpus - n_p) for n_p in range(1, num_gpus)]
        out += _disaggregated(splits, tps, space, node, mem, name_gpus=False)
    return out


def enumerate_mixed(model: ModelArch, pools: list[tuple[GPUSpec, int]], node: NodeSpec, space: SearchSpace, *,
                    gpu_memory_utilization: float, block_size: int, max_request_tokens: int) -> list[Candidate]:
    """Two GPU types as separate pools: prefill on one type's GPUs, decode on the other's, every TP of each."""
    (a, n_a), (b, n_b) = pools
    mem = (model, gpu_memory_utilization, block_size, max_request_tokens)
    return _disaggregated([(a, n_a, b, n_b), (b, n_b, a, n_a)], space.tp, space, node, mem, name_gpus=True)


def _disaggregated(splits: list[tuple[GPUSpec, int, GPUSpec, int]], tps: list[int] | None, space: SearchSpace,
                   node: NodeSpec, mem: tuple, name_gpus: bool) -> list[Candidate]:
    """Prefill/decode pools for each (prefill GPU, count, decode GPU, count) split, every TP of each pool."""
    model = mem[0]
    out: list[Candidate] = []
    for p_gpu, n_p, d_gpu, n_d in splits:
        for tp_p in [t for t in (tps or _powers_of_two(n_p)) if n_p % t == 0]:
            for tp_d in [t for t in (tps or _powers_of_two(n_d)) if n_d % t == 0]:
                prefill, decode = Plan(tp=tp_p, replicas=n_p // tp_p), Plan(tp=tp_d, replicas=n_d // tp_d)
                static = _tp_problem(model, tp_p, node) or _tp_problem(model, tp_d, node)
                names = {"prefill_gpu": p_gpu.name, "decode_gpu": d_gpu.name} if name_gpus else {}
                out += _with_knobs(space, static, [(p_gpu, prefill), (d_gpu, decode)], mem,
                                   lambda seqs, tokens, reason, d=decode, p=prefill, kw=names:
                                   Candidate(d, seqs, tokens, reason, prefill=p, **kw))
    return out


def _with_knobs(space: SearchSpace, static: str, pools: list[tuple[GPUSpec, Plan]], mem: tuple,
                make: Callable[[int, int, str], Candidate], redundant_experts: int = 0) -> list[Candidate]:
    """One candidate per engine-knob setting, each with the first reason it cannot run (or none)."""
    model, util, block_size, max_request_tokens = mem
    out = []
    for seqs in space.max_num_seqs:
        for tokens in space.max_num_batched_tokens:
            reason = static
            if not reason and tokens < seqs:
                reason = f"max_num_batched_tokens {tokens} < max_num_seqs {seqs}"
            for gpu, plan in pools:
                reason = reason or _memory_problem(model, gpu, plan, util, block_size, tokens, seqs,
                                                   max_request_tokens, redundant_experts)
            out.append(make(seqs, tokens, reason))
    return out


def _memory_problem(model: ModelArch, gpu: GPUSpec, plan: Plan, util: float, block_size: int, tokens: int,
                    seqs: int, max_request_tokens: int, redundant_experts: int = 0) -> str:
    try:
        mem = memory_budget(model, gpu, plan, gpu_memory_utilization=util, block_size=block_size,
                            max_batched_tokens=tokens, max_num_seqs=seqs, redundant_experts=redundant_experts)
    except FleetsimError as exc:
        return str(exc)
    need = min(max_request_tokens, model.max_context)
    if mem.token_capacity < need:
        return (f"plan {plan.label()}: KV room for {mem.token_capacity:,} tokens per replica "
                f"({mem.kv_bytes / 1e9:.1f} GB per GPU), the longest request needs {need:,}")
    return ""
