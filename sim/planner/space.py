"""The plan space: every DP x TP x PP x attention-DP x EP split of the cluster (and, on request, every prefill/decode
pool split), every balancing policy and engine-knob setting, each checked by the run's own feasibility function.

A plan that cannot run carries its reason (weights that do not fit, no KV room for the longest request, a TP
degree the model's heads do not allow), so the search reports it instead of silently skipping it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from sim.errors import FleetsimError
from sim.hardware.specs import GPUSpec, NodeSpec
from sim.model.arch import ModelArch
from sim.moe.policy import parse_policy
from sim.parallel.feasibility import EngineLimits, pool_problem
from sim.parallel.plan import Plan
from sim.serving.engine_config import EngineConfig


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
    # The cluster's GPU count is a budget: plans with fewer replicas (and so fewer GPUs) are searched too. True keeps
    # to plans that use every GPU.
    all_gpus: bool = False

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
class WorkloadNeeds:
    """What feasibility needs besides the plan: the model, the node, the scenario's engine knobs and balancing policy,
    and the longest prompt and request of the workload."""

    model: ModelArch
    node: NodeSpec
    engine: EngineConfig  # the scenario's; the search varies max_num_seqs and max_num_batched_tokens
    moe_policy: str
    longest_prompt: int
    longest: int


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


def _layouts(model: ModelArch, num_gpus: int, space: SearchSpace, pool: bool = False,
             budget: bool = False) -> list[Plan]:
    """Every plan using all `num_gpus` GPUs (with `budget`, at most that many: every replica count of every replica
    shape that fits): data-parallel attention ranks (1: none) with the FFN split by TP over all their GPUs (APEX's
    split), or, for MoE models, with the experts spread whole over them (EP inside the TP group, or DP attention
    ranks + EP). A disaggregated pool (`pool`) keeps PP at 1 and, for dense models, attention-DP at 1 unless the
    space names them."""
    tps = space.tp or _powers_of_two(num_gpus)
    pps = space.pp or ([1] if pool else [p for p in _powers_of_two(num_gpus) if model.num_layers % p == 0])
    dps = space.attn_dp or ([1] if pool and model.moe is None else _powers_of_two(num_gpus))
    layouts = [(tp, pp, a, 1) for tp in tps for pp in pps for a in dps]
    if model.moe is not None:
        layouts += [(tp, pp, a, tp * a) for tp in tps for pp in pps for a in dps if tp * a > 1]
    if space.ep is not None:
        layouts = [layout for layout in layouts if layout[3] in space.ep]
    if budget:
        return [Plan(tp=tp, pp=pp, replicas=r, ep=ep, attn_dp=a)
                for tp, pp, a, ep in layouts for r in range(1, num_gpus // (tp * pp * a) + 1)]
    return [Plan(tp=tp, pp=pp, replicas=num_gpus // (tp * pp * a), ep=ep, attn_dp=a)
            for tp, pp, a, ep in layouts if num_gpus % (tp * pp * a) == 0]


def count_plans(model: ModelArch, num_gpus: int, space: SearchSpace) -> int:
    """How many colocated candidates `enumerate_candidates` would list, counted without listing them (a search
    refuses a space too large to list: sim/core/budget.py)."""
    tps = space.tp or _powers_of_two(num_gpus)
    pps = space.pp or [p for p in _powers_of_two(num_gpus) if model.num_layers % p == 0]
    dps = space.attn_dp or _powers_of_two(num_gpus)
    layouts = 0
    for tp in tps:
        for pp in pps:
            for a in dps:
                size = tp * pp * a
                eps = [1] + ([tp * a] if model.moe is not None and tp * a > 1 else [])
                eps = [e for e in eps if space.ep is None or e in space.ep]
                per = (num_gpus // size) if not space.all_gpus else (1 if num_gpus % size == 0 else 0)
                layouts += per * len(eps)
    policies = max(1, len(space.moe_policies or ())) * max(1, len(space.kv_policies or ()))
    return layouts * len(space.max_num_seqs) * len(space.max_num_batched_tokens) * policies


def _policies(space: SearchSpace, plan: Plan) -> tuple[str, ...]:
    """Balancing policies to try on a plan: the space's on EP plans; plans without EP run the plain split ('' keeps
    the scenario's policy)."""
    if plan.ep > 1:
        return space.moe_policies or ("",)
    return ("ep",) if space.moe_policies else ("",)


def enumerate_candidates(model: ModelArch, gpu: GPUSpec, node: NodeSpec, num_gpus: int, space: SearchSpace,
                         work: WorkloadNeeds) -> list[Candidate]:
    """Every (plan, knobs) that uses at most `num_gpus` GPUs (all of them with `space.all_gpus`), feasible or with
    the reason it is not (the same check a run makes: sim/parallel/feasibility.py). TP stays inside a node where it
    can (it spans nodes only when larger than a node). Disaggregated pools split all `num_gpus`."""
    out: list[Candidate] = []
    for plan in _layouts(model, num_gpus, space, budget=not space.all_gpus):
        for policy in _policies(space, plan):
            out += _with_knobs(space, work, [(gpu, plan, policy or work.moe_policy, work.longest)],
                               lambda seqs, tokens, reason, plan=plan, policy=policy:
                               Candidate(plan, seqs, tokens, reason, moe_policy=policy))
    if space.disagg:
        splits = [(gpu, n_p, gpu, num_gpus - n_p) for n_p in range(1, num_gpus)]
        out += _disaggregated(model, splits, space, node, work, name_gpus=False)
    return out


def enumerate_mixed(model: ModelArch, pools: list[tuple[GPUSpec, int]], node: NodeSpec, space: SearchSpace,
                    work: WorkloadNeeds) -> list[Candidate]:
    """Two GPU types as separate pools: prefill on one type's GPUs, decode on the other's, every layout of each."""
    (a, n_a), (b, n_b) = pools
    return _disaggregated(model, [(a, n_a, b, n_b), (b, n_b, a, n_a)], space, node, work, name_gpus=True)


def _disaggregated(model: ModelArch, splits: list[tuple[GPUSpec, int, GPUSpec, int]], space: SearchSpace,
                   node: NodeSpec, work: WorkloadNeeds, name_gpus: bool) -> list[Candidate]:
    """Prefill/decode pools for each (prefill GPU, count, decode GPU, count) split, every layout of each pool; a
    balancing policy applies to the pools that use EP."""
    out: list[Candidate] = []
    for p_gpu, n_p, d_gpu, n_d in splits:
        for prefill in _layouts(model, n_p, space, pool=True):
            for decode in _layouts(model, n_d, space, pool=True):
                policies = _policies(space, prefill if prefill.ep > 1 else decode)
                names = {"prefill_gpu": p_gpu.name, "decode_gpu": d_gpu.name} if name_gpus else {}
                for policy in policies:
                    effective = policy or work.moe_policy
                    pools = [(p_gpu, prefill, effective if prefill.ep > 1 else "ep", work.longest_prompt + 1),
                             (d_gpu, decode, effective if decode.ep > 1 else "ep", work.longest)]
                    out += _with_knobs(space, work, pools,
                                       lambda seqs, tokens, reason, d=decode, p=prefill, kw=names, m=policy:
                                       Candidate(d, seqs, tokens, reason, prefill=p, moe_policy=m, **kw))
    return out


def _with_knobs(space: SearchSpace, work: WorkloadNeeds, pools: list[tuple[GPUSpec, Plan, str, int]],
                make: Callable[[int, int, str], Candidate]) -> list[Candidate]:
    """One candidate per engine-knob setting, each with the first reason it cannot run (or none)."""
    out = []
    eng = work.engine
    for seqs in space.max_num_seqs:
        for tokens in space.max_num_batched_tokens:
            reason = ""
            try:
                dataclasses.replace(eng, max_num_seqs=seqs, max_num_batched_tokens=tokens)
            except FleetsimError as exc:
                reason = str(exc)
            limits = EngineLimits(eng.gpu_memory_utilization, eng.block_size, tokens, seqs, eng.watermark_fraction,
                                  eng.num_gpu_blocks_override)
            for gpu, plan, policy, longest in pools:
                reason = reason or pool_problem(work.model, gpu, work.node, plan, limits, moe_policy=policy,
                                                longest_request=longest)
            out.append(make(seqs, tokens, reason))
    return out
