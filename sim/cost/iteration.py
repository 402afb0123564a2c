"""Time of one engine step (one forward pass) of one replica under a TP x PP x attention-DP x EP plan.

A pure function of the step plan (sim/cost/step_plan.py): for every attention rank of every pipeline micro-batch,
its prefill chunks (new tokens, tokens already in the KV cache), its decodes (count and KV sum) and its sampled
tokens. Kernel times are rooflines with efficiency curves fitted to measurements (sim.cost.calibration);
tensor-parallel all-reduces use the fitted NCCL alpha-beta model; expert parallelism pays a dispatch and a combine
all-to-all (sim.hardware.collective).

Where the work runs:
- Rank side (each attention rank on its own tokens, split by its TP group): QKV/output projections, norms, rotary,
  residuals, attention, the TP all-reduces, the MoE router and shared experts, the dense MLP when the FFN is not
  data-parallel, the LM head over the rank's sampled tokens, and the activation sends between pipeline stages.
- Union side (all ranks' tokens of a micro-batch together): routed experts (under EP on the busiest GPU, whose load
  a routing/balancing profile may set: sim/moe/balance.py) with their all-to-alls, or the FFN split over all
  tp x attn_dp GPUs with its all-gather/reduce-scatter when attention is data-parallel without EP.
Ranks meet at every FFN layer and every layer repeats the same per-rank work, so a micro-batch takes the busiest
rank's rank side plus the union side; the pipeline's stages hold one micro-batch each, so a step (one round of
every micro-batch through every stage) lasts as long as the slowest micro-batch (see step_plan.py).

MLA (DeepSeek-V2/V3) attention: prefill chunks use the plain multi-head form (latents up-projected to per-head keys
and values, the cached context's latents up-projected again per chunk), decodes the absorbed form that reads only
the latents, as vLLM's MLA backends do (vllm/v1/attention/backends/mla/common.py: "MHA for prefill, MQA-style
absorbed attention for decode").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from sim.cost.kernels.attention import AttentionTable, load_attention_table
from sim.cost.kernels.decode_attention import Piecewise, load_decode_attention_table
from sim.cost.kernels.moe import load_moe_table
from sim.cost.kernels.comm import MeasuredGatherScatter, load_allreduce, load_alltoall, load_gather_scatter
from sim.cost.kernels.gemm import load_gemm_tables
from sim.energy.power import PowerModel
from sim.energy.work import StepWork, rank_work
from sim.cost.step_plan import RankBatch, StepPlan
from sim.hardware.calibration import Calibration, load_calibration
from sim.hardware.catalog import load_gpu
from sim.hardware.cluster import Cluster
from sim.hardware.collective import allreduce_model, alltoall_model, sendrecv_model
from sim.model.arch import ModelArch
from sim.model.dtypes import dtype_bytes
from sim.model.precision import compute_dtype
from sim.parallel.plan import Plan

ACT_BYTES = 2.0
DISPATCH_BYTES = 1.0  # FP8 token copies out to the experts, BF16 back (DeepEP's formats)
_CALIBRATED_GPU = {"a100": "a100-80gb-sxm", "h100": "h100-sxm"}


class ExpertProfile(Protocol):
    """How a routing and a balancing policy load the expert-parallel GPUs, as a function of the tokens of all ranks
    of a micro-batch (sim.moe.balance.Profile implements it). Both functions never decrease with the tokens."""

    def compute_s(self, tokens: int) -> float:
        """One MoE layer's expert work on the busiest GPU, with whatever the policy adds (weights lent, moved)."""

    def received(self, tokens: int) -> float:
        """Token copies the busiest GPU receives in one MoE layer."""

    a2a_calls: tuple[float, ...]  # bytes per copy-element of each all-to-all of a layer
    kv_gather_bytes: float  # per token and layer, KV copied to every EP GPU (0 but under ExFlow)


class IterationCost:
    """Step time for one replica; memoises the parts that depend only on token counts."""

    def __init__(self, model: ModelArch, cluster: Cluster, plan: Plan, step_overhead_s: float = 0.0, *,
                 seq_overhead_s: float = 0.0, graph_max_tokens: int = 512, graph_prefill: bool = True,
                 eager_layer_s: float = 0.0, power_cap: PowerModel | None = None) -> None:
        """The engine's step-cost rules (EngineConfig.cost_args gives them for a preset): CPU seconds per step and per
        sequence in it, and which steps run as CUDA graphs (up to `graph_max_tokens`, with prefill chunks only if
        `graph_prefill`). The others run eagerly: each collective pays its eager latency, and the forward takes at
        least the CPU's `eager_layer_s` per layer to launch (the GPU waits on the CPU when its kernels are short)."""
        self.model, self.cluster, self.plan = model, cluster, plan
        # A GPU power cap stretches each step by its compute-bound share (sim/energy/power.py); None: uncapped.
        self.power_cap = power_cap if power_cap is not None and power_cap.cap_w is not None else None
        self.work = StepWork.of(model)
        self.step_overhead_s = step_overhead_s
        self.seq_overhead_s = seq_overhead_s
        self.graph_max_tokens, self.graph_prefill = graph_max_tokens, graph_prefill
        self.eager_floor_s = model.num_layers * eager_layer_s
        gpu = cluster.gpu
        self.calib: Calibration = load_calibration(gpu.calibration)
        self.gemm_tables = load_gemm_tables(gpu.kernel_tables) if gpu.kernel_tables else {}
        # Prefill attention measured per head shape (MLA prefills as multi-head attention over 192-dim keys).
        self.attn_table = load_attention_table(gpu.kernel_tables) if gpu.kernel_tables else None
        # Sliding-window layers' prefill, measured per window (None: that window was not measured).
        self.attn_window_table = (load_attention_table(gpu.kernel_tables, model.sliding_window)
                                  if gpu.kernel_tables and model.sliding_window_layers else None)
        # Fused MoE measured per model shape, precision and split (None: no table for this GPU).
        self.moe_table = load_moe_table(gpu.kernel_tables) if gpu.kernel_tables and model.moe else None
        self._moe_curves: dict[float, tuple | None] = {}
        # Decode attention measured per head shape and KV precision (MLA's latent decode kernel was not measured).
        self.decode_table = (load_decode_attention_table(gpu.kernel_tables)
                             if gpu.kernel_tables and not model.mla else None)
        if model.mla:
            self._attn_kv_heads = max(1, model.num_heads // plan.tp)
            self._attn_head_dim = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim
        else:
            self._attn_kv_heads = max(1, model.num_kv_heads // plan.tp)
            self._attn_head_dim = model.head_dim
        calib_link = load_gpu(_CALIBRATED_GPU[gpu.calibration]).scale_up_gbps
        self.peak_bf16 = gpu.peak_flops("bf16")
        self.bw = gpu.hbm_bytes_per_s
        # Weights' formats: each GEMM reads its weights' bytes and multiplies at its compute format's peak.
        self.wdtype = model.weight_dtype
        self.edtype = model.expert_weight_dtype or model.weight_dtype
        self.head_dtype = "bf16"  # quantized checkpoints keep the LM head (and the MoE router) in 16 bits
        self.ebytes = dtype_bytes(self.edtype)
        self._formats = {d: (dtype_bytes(d), gpu.peak_flops(compute_dtype(d)),
                             self.gemm_tables.get({"bf16": "bf16", "fp16": "bf16", "fp8": "fp8"}.get(d, "")))
                         for d in {self.wdtype, self.edtype, self.head_dtype}}
        self._bf16_table = self.gemm_tables.get("bf16")
        self.kvbytes = dtype_bytes(model.kv_dtype)
        tp = plan.tp
        self.tp = tp
        self.attn_dp = plan.attn_dp
        self.pp = plan.pp
        self.allreduce = None
        if tp > 1:
            self.allreduce = self._allreduce(tp, plan.tp_nodes or None, calib_link)
        self.p2p = sendrecv_model(cluster, self.calib, calib_link,
                                  cluster.spans_nodes(plan.gpus_per_replica) or plan.tp_nodes > 1)
        self.heads = max(1, model.num_heads // tp)
        self.kv_heads = max(1, model.num_kv_heads // tp)
        self.ep = plan.ep if model.moe else 1
        self.alltoall = None
        if self.ep > 1:
            self.alltoall = self._alltoall(self.ep, calib_link)
        # Without EP, data-parallel attention ranks gather their tokens for an FFN split over all tp x attn_dp
        # GPUs, then scatter them back: an all-gather and a reduce-scatter (measured where tables exist, else the
        # bytes of one all-reduce).
        self.ffn_tp = tp * plan.attn_dp if self.ep == 1 else tp
        self.ffn_comm = None
        if self.ffn_tp > 1:
            if self.ffn_tp != tp:
                self.ffn_comm = self._gather_scatter(self.ffn_tp, calib_link)
            else:
                self.ffn_comm = self._allreduce(self.ffn_tp, plan.tp_nodes or None, calib_link)
        # Expert-parallel loads under a routing and balancing policy; None: every GPU gets the mean (the search's
        # optimistic bounds use that).
        self.expert_profile: ExpertProfile | None = None
        # Without EP: tokens -> expected distinct experts they hit per MoE layer, under a routing (None: uniform).
        self.expert_activity: Callable[[int], float] | None = None
        self._rank_cache: dict[tuple[int, int], float] = {}
        self._union_cache: dict[tuple[int, int], tuple[float, float]] = {}
        self._decode_cache: dict[int, tuple] = {}
        self._decode_curves: dict[tuple[int, bool], Piecewise | None] = {}
        self._rank_decode_cache: dict[int, float] = {}
        self._prefill_cache: dict[tuple, float] = {}
        self._attn_coeffs()

    def _allreduce(self, n: int, nodes: int | None, calib_link: float):  # noqa: ANN202  (AllReduce-like)
        """vLLM's all-reduce as measured on this GPU when the group sits in one NVLink node and tables exist, else
        the NCCL fit of the calibration family (scaled by the links, hierarchical across nodes)."""
        cluster = self.cluster
        one_node = (nodes or -(-n // cluster.node.gpus_per_node)) == 1
        if one_node and cluster.node.link == "nvlink" and cluster.gpu.kernel_tables:
            measured = load_allreduce(cluster.gpu.kernel_tables, n)
            if measured is not None:
                return measured
        return allreduce_model(cluster, self.calib, calib_link, n, nodes)

    def _gather_scatter(self, n: int, calib_link: float):  # noqa: ANN202  (AllReduce-like)
        """NCCL's all-gather and reduce-scatter as measured on this GPU when the `n` GPUs sit in one NVLink node and
        tables exist, else the all-reduce of the same bytes (the family's NCCL fit)."""
        cluster = self.cluster
        if -(-n // cluster.node.gpus_per_node) == 1 and cluster.node.link == "nvlink" and cluster.gpu.kernel_tables:
            measured = load_gather_scatter(cluster.gpu.kernel_tables, n)
            if measured is not None:
                return measured
        return self._allreduce(n, None, calib_link)

    def _alltoall(self, n: int, calib_link: float) -> Callable[[float], float]:
        """NCCL's all-to-all as measured on this GPU when the EP group sits in one NVLink node and tables exist, else
        the calibration family's model (two-hop across nodes)."""
        cluster = self.cluster
        if -(-n // cluster.node.gpus_per_node) == 1 and cluster.node.link == "nvlink" and cluster.gpu.kernel_tables:
            measured = load_alltoall(cluster.gpu.kernel_tables, n)
            if measured is not None:
                return measured
        return alltoall_model(cluster, self.calib, calib_link, n, self.model.moe.top_k)

    # ---- kernels -------------------------------------------------------------------------------------------------
    def _gemm(self, m: float, k: float, n: float, dtype: str) -> float:
        """One linear layer: m tokens times a k x n weight shard stored in `dtype`; measured where the GPU has a
        table for that format (BF16, FP8), else the roofline."""
        if m <= 0:
            return 0.0
        wbytes, _, table = self._formats[dtype]
        if table is not None and table.covers(n, k):
            return table.time(m, k, n)
        bf16 = self._bf16_table
        if bf16 is not None and wbytes < 2.0 and compute_dtype(dtype) == "bf16" and bf16.covers(n, k):
            # Weight-only formats (INT8/INT4/MXFP4 weights, BF16 math) were not measured: the measured BF16 kernel
            # less the weight bytes they do not read, taken as its one-token time (almost all weight read).
            t = bf16.time(m, k, n)
            r = wbytes / 2.0
            return max(t - (1.0 - r) * bf16.time(1.0, k, n), r * t)
        return self._roofline_gemm(m, k, n, dtype)

    def _roofline_gemm(self, m: float, k: float, n: float, dtype: str, weight_copies: float = 1.0) -> float:
        """The roofline with the calibration family's efficiency curve (weight_copies distinct weights read)."""
        if m <= 0:
            return 0.0
        g = self.calib.gemm
        wbytes, peak, _ = self._formats[dtype]
        flops = 2.0 * m * k * n
        nbytes = wbytes * k * n * weight_copies + ACT_BYTES * (m * k + m * n)
        eff = g["compute_eff_max"] * m / (m + g["half_eff_tokens"])
        return max(flops / (peak * eff), nbytes / (self.bw * g["mem_eff"])) + g["overhead_s"]

    def _elementwise(self, nbytes: float) -> float:
        e = self.calib.elementwise
        return nbytes / (self.bw * e["mem_eff"]) + e["overhead_s"]

    def _attn_coeffs(self) -> None:
        """Per layer and GPU: FLOPs per (query, key) pair and KV bytes read per cached token, for prefill and decode."""
        m = self.model
        if m.mla:
            ml = m.mla
            latent = ml.kv_lora_rank + ml.qk_rope_head_dim
            # Decode, absorbed: queries projected into the latent space attend over the latents (QK over
            # kv_lora_rank + rope dims, PV over kv_lora_rank).
            self.flops_per_pair = 2.0 * self.heads * (latent + ml.kv_lora_rank)
            self.kv_read_per_token = latent * self.kvbytes
            # Prefill, plain multi-head: QK over nope + rope dims, PV over the value head dim.
            self.prefill_flops_per_pair = 2.0 * self.heads * (ml.qk_nope_head_dim + ml.qk_rope_head_dim + ml.v_head_dim)
            self.prefill_kv_read_per_token = latent * self.kvbytes
        else:
            self.flops_per_pair = 4.0 * self.heads * m.head_dim
            self.kv_read_per_token = 2.0 * self.kv_heads * m.head_dim * self.kvbytes
            self.prefill_flops_per_pair = self.flops_per_pair
            self.prefill_kv_read_per_token = self.kv_read_per_token
        a = self.calib.attention
        self._prefill_rates = (self.peak_bf16 * a["prefill_compute_eff"], self.bw * a["decode_mem_eff"],
                               a["overhead_s"])
        self.attn_decode_s_per_token = max(
            self.flops_per_pair / (self.peak_bf16 * a["prefill_compute_eff"]),
            self.kv_read_per_token / (self.bw * a["decode_mem_eff"]),
        )

    # ---- rank side (memoised by token count) ---------------------------------------------------------------------
    def _eager(self, tokens: int, prefill: bool) -> bool:
        """Whether a step of `tokens` tokens (with prefill chunks or not) runs outside a CUDA graph."""
        return tokens > self.graph_max_tokens or (prefill and not self.graph_prefill)

    def _cpu(self, seqs: int) -> float:
        """CPU time of a step around its forward (input preparation, sampling, output processing): per step, and per
        sequence in it. It adds to the forward, which the CPU cannot launch before its inputs are ready."""
        return self.step_overhead_s + self.seq_overhead_s * seqs

    def _floor(self, tokens: int, prefill: bool) -> float:
        """The least time a forward of a rank's `tokens` tokens takes: its CPU launches when it runs eagerly."""
        return self.eager_floor_s if self.eager_floor_s and self._eager(tokens, prefill) else 0.0

    def _rank_linear(self, tokens: int, logits: int, prefill: bool = False) -> float:
        """Everything one attention rank's GPUs do on its `tokens` tokens (`logits` of them sampled) but attention
        itself (all layers, all stages)."""
        key = (tokens, logits, prefill)
        cached = self._rank_cache.get(key)
        if cached is not None:
            return cached
        m, tp, h = self.model, self.tp, self.model.hidden_size
        t = float(tokens)
        if m.mla:
            ml = m.mla
            proj = (self._gemm(t, h, ml.q_lora_rank, self.wdtype) if ml.q_lora_rank else 0.0)
            proj += self._gemm(t, ml.q_lora_rank or h, m.q_dim / tp, self.wdtype)
            proj += self._gemm(t, h, ml.kv_lora_rank + ml.qk_rope_head_dim, self.wdtype)
            # Up-projection of the new tokens' latents (prefill) or its absorbed twin on the queries and outputs
            # (decode): the same weight, the same FLOPs.
            proj += self._gemm(t, ml.kv_lora_rank, m.num_heads * (ml.qk_nope_head_dim + ml.v_head_dim) / tp,
                               self.wdtype)
        else:
            proj = self._gemm(t, h, (m.q_dim + 2 * m.num_kv_heads * m.head_dim) / tp, self.wdtype)
        proj += self._gemm(t, m.attn_out_dim / tp, h, self.wdtype)
        ew = self._elementwise(t * ACT_BYTES * (4 * h + 2 * (m.q_dim / tp) + 6 * h))
        # Steps the engine runs as CUDA graphs pay the graph's collective latency, the others the eager one.
        eager = self._eager(tokens, prefill)
        allreduce = self.allreduce.time(t * h * ACT_BYTES, eager) if self.allreduce else 0.0
        total = m.num_layers * (proj + ew + allreduce)
        if self.ffn_tp == tp:
            # The FFN of dense layers runs on the rank's own tokens, split by its TP group.
            dense = self._dense_mlp(t, tp) + (self.ffn_comm.time(t * h * ACT_BYTES, eager) if self.ffn_comm else 0.0)
            total += m.num_dense_layers * dense
        if m.moe:
            moe_rank = self._gemm(t, h, m.moe.num_experts, self.head_dtype)  # the router (kept in 16 bits)
            if self.ffn_tp == tp:
                moe_rank += self._shared_experts(t, tp)
            total += m.num_moe_layers * moe_rank
        total += self._gemm(float(logits), h, m.vocab_size / tp, self.head_dtype) if logits else 0.0
        if self.pp > 1:
            total += (self.pp - 1) * self.p2p.time(t * h * ACT_BYTES)
        self._rank_cache[key] = total
        return total

    def _dense_mlp(self, t: float, split: int) -> float:
        m, h = self.model, self.model.hidden_size
        return (self._gemm(t, h, 2 * m.intermediate_size / split, self.wdtype)
                + self._gemm(t, m.intermediate_size / split, h, self.wdtype)
                + self._elementwise(t * ACT_BYTES * 3 * m.intermediate_size / split))

    def _shared_experts(self, t: float, split: int) -> float:
        moe, h = self.model.moe, self.model.hidden_size
        if not moe.shared_experts:
            return 0.0
        fs = moe.expert_intermediate_size * moe.shared_experts
        return self._gemm(t, h, 2 * fs / split, self.wdtype) + self._gemm(t, fs / split, h, self.wdtype)

    # ---- union side (all ranks of a micro-batch) -----------------------------------------------------------------
    def _union(self, tokens: int, busiest_rank_tokens: int, prefill: bool = False) -> tuple[float, float]:
        """(seconds, of which MoE layers' routed experts and their communication) of the FFN work done on all
        ranks' `tokens` together; `busiest_rank_tokens` bounds what one rank's GPUs send to the experts."""
        key = (tokens, busiest_rank_tokens, prefill)
        cached = self._union_cache.get(key)
        if cached is not None:
            return cached
        m, h = self.model, self.model.hidden_size
        T = float(tokens)
        total, moe_part = 0.0, 0.0
        data_parallel_ffn = self.ffn_tp != self.tp
        if tokens > 0:
            # Each rank picks its graph by its own (padded) batch: DP ranks pad to the busiest one's size.
            eager = self._eager(busiest_rank_tokens, prefill)
            comm = self.ffn_comm.time(T * h * ACT_BYTES, eager) if (self.ffn_comm and data_parallel_ffn) else 0.0
            if data_parallel_ffn:
                total += m.num_dense_layers * (self._dense_mlp(T, self.ffn_tp) + comm)
            if m.moe:
                if self.ep > 1:
                    layer = self._expert_parallel(T, busiest_rank_tokens)
                else:
                    layer = self._tp_experts(T)
                    layer += self.ffn_comm.time(T * h * ACT_BYTES, eager) if self.ffn_comm else 0.0
                    if data_parallel_ffn:
                        layer += self._shared_experts(T, self.ffn_tp)
                moe_part = m.num_moe_layers * layer
                total += moe_part
        result = (total, moe_part)
        self._union_cache[key] = result
        return result

    def _tp_experts(self, T: float) -> float:
        """Routed experts split by the FFN's TP degree: every GPU holds a slice of every expert, so a skewed routing
        loads the GPUs alike; what it changes is how many distinct experts the tokens hit (the weights read), from
        the routing when one is set (`expert_activity`), else for uniform choices."""
        moe = self.model.moe
        e, k = moe.num_experts, moe.top_k
        active = self.expert_activity(int(T)) if self.expert_activity else e * (1.0 - (1.0 - k / e) ** T)
        return self.expert_time(T * k, active, moe.expert_intermediate_size / self.ffn_tp)

    def _expert_parallel(self, T: float, busiest_rank_tokens: int) -> float:
        """One MoE layer under EP: the busiest GPU's grouped GEMM and the all-to-alls, which last as long as the
        busiest sender (a rank's copies, split over its TP GPUs) or the busiest receiver takes."""
        moe, h = self.model.moe, self.model.hidden_size
        e, k = moe.num_experts, moe.top_k
        profile = self.expert_profile
        gather = 0.0
        if profile is not None:
            compute = profile.compute_s(int(T))
            received = profile.received(int(T))
            calls = profile.a2a_calls
            gather = profile.kv_gather_bytes
        else:
            local = e / self.ep
            active = local * (1.0 - (1.0 - k / e) ** T)
            received = T * k / self.ep
            compute = self.expert_time(received, active)
            calls = (DISPATCH_BYTES, ACT_BYTES)
        copies = max(received, busiest_rank_tokens * k / self.tp)
        comm = sum(self.alltoall(copies * h * nbytes) for nbytes in calls)
        if gather:
            comm += self.alltoall(T * gather)
        return compute + comm

    def expert_time(self, copies: float, active: float, width: float | None = None) -> float:
        """One GPU's grouped GEMM over `copies` token copies spread across `active` experts (of intermediate size
        `width`, default the whole expert): each expert's problem is as efficient as its token count allows."""
        if copies <= 0 or active <= 0:
            return 0.0
        h = self.model.hidden_size
        width = self.model.moe.expert_intermediate_size if width is None else width
        measured = self._moe_curve(width)
        if measured is not None:
            # Two measured factors (sim/cost/kernels/moe.py): the even-routing layer with as many experts busy, and
            # how much longer the all-busy layer takes at this load per expert than at one copy each.
            moe, (curve, _, at_busy) = self.model.moe, measured
            local = moe.num_experts / self.ep
            busy = min(active, local)
            all_busy = moe.num_experts / moe.top_k
            load = curve.time(max(copies / busy, 1.0) * all_busy)
            if busy >= local:
                return load
            return curve.time(busy / local * all_busy) * load / at_busy
        overhead = self.calib.gemm["overhead_s"]
        per_expert = copies / active
        up = self._roofline_gemm(per_expert, h, 2 * width, self.edtype) - overhead
        down = self._roofline_gemm(per_expert, width, h, self.edtype) - overhead
        # The grouped GEMM runs `active` expert problems in one kernel: sum their times, one launch overhead.
        return (active * (up + down) + 2 * overhead
                + self._elementwise(active * per_expert * ACT_BYTES * 3 * width))

    def _moe_curve(self, width: float) -> tuple | None:
        """The measured fused-MoE curve, its kernel and its time when every expert is just busy, for experts cut to
        `width` on this plan, if measured."""
        if width not in self._moe_curves:
            moe, found = self.model.moe, None
            split = moe.expert_intermediate_size / width
            if self.moe_table is not None and split == int(split):
                found = self.moe_table.curve(self.edtype, self.model.hidden_size, moe.expert_intermediate_size,
                                             moe.top_k, moe.num_experts, int(split), self.ep)
                if found is not None:
                    found = (*found, found[0].time(moe.num_experts / moe.top_k))
            self._moe_curves[width] = found
        return self._moe_curves[width]

    # ---- attention -----------------------------------------------------------------------------------------------
    def _prefill_attention(self, chunks: Sequence[tuple[int, int]]) -> float:
        """All layers' attention over a step's prefill chunks ((new tokens, cached context) each). vLLM V1 runs the
        step's sequences through one variable-length FlashAttention call per layer (vllm/v1/attention/backends/
        flash_attn.py): the measured table prices the chunks together (`_table_prefill`), and the roofline adds its
        launch overhead once per step."""
        key = tuple(chunks)
        cached = self._prefill_cache.get(key)
        if cached is not None:
            return cached
        if len(self._prefill_cache) > 4096:  # chunk mixes rarely repeat past the first few thousand
            self._prefill_cache.clear()
        m = self.model
        flop_rate, byte_rate, overhead = self._prefill_rates
        window = m.sliding_window if m.sliding_window_layers else 0
        per_pair, per_token = self.prefill_flops_per_pair, self.prefill_kv_read_per_token
        pairs, pairs_win, kv_read, context_up = [], [], 0.0, 0.0
        for c, ctx in chunks:
            if c <= 0:
                continue
            pairs.append(c * (ctx + (c + 1) / 2.0))
            if window:
                pairs_win.append(c * min(ctx + (c + 1) / 2.0, window))
            kv_read += per_token * (ctx + c)
            if m.mla and ctx:
                # The cached context's latents are up-projected to keys and values again for each chunk.
                ml = m.mla
                context_up += self._gemm(float(ctx), ml.kv_lora_rank,
                                         m.num_heads * (ml.qk_nope_head_dim + ml.v_head_dim) / self.tp, self.wdtype)
        if not pairs:
            self._prefill_cache[key] = 0.0
            return 0.0
        memory = kv_read / byte_rate
        if self.attn_table is not None:
            t = self._table_prefill(pairs)
            if window:
                t_win = (self._table_prefill(pairs_win, self.attn_window_table, window)
                         if self.attn_window_table is not None else self._table_prefill(pairs_win))
                t = (m.full_attention_layers * t + m.sliding_window_layers * t_win) / m.num_layers
            layer = t if t > memory else memory
        else:
            total = sum(pairs)
            if window:
                total = (m.full_attention_layers * total + m.sliding_window_layers * sum(pairs_win)) / m.num_layers
            compute = per_pair * total / flop_rate
            layer = (compute if compute > memory else memory) + overhead
        result = (layer + context_up) * m.num_layers
        self._prefill_cache[key] = result
        return result

    def _table_prefill(self, pairs: Sequence[float], table: AttentionTable | None = None, window: int = 0) -> float:
        """One layer's measured prefill attention over sequences holding these (query, key) pairs, each counted as
        the fresh sequence of the length s with as many pairs: s (s + 1) / 2, or under a sliding window of w (a
        window `table` measured for it) s min((s + 1) / 2, w). Without a window table a windowed layer is read
        from the full-attention grid at its pairs, which under-prices it (the kernel still walks the tiles the
        window cuts through). The grid times b equal sequences; a step's unequal ones take the largest of three
        bounds, each never lower with another sequence or a longer one (so more work never costs less): for every
        k, the k longest as k sequences of the k-th longest length; the b sequences' fixed cost (b one-token
        sequences); and each sequence at the least per-sequence cost of any measured batch. On b equal sequences
        that is the grid's own time."""
        table = table or self.attn_table
        h, kv, d = self.heads, self._attn_kv_heads, self._attn_head_dim
        knee = (2 * window - 1) * window  # pairs of a fresh sequence 2w - 1 long: beyond it, w per token

        def length(p: float) -> float:
            return p / window if window and p > knee else (math.sqrt(1.0 + 8.0 * p) - 1.0) / 2.0

        if len(pairs) == 1:  # one sequence: the grid's own time (the other bounds are below it)
            return table.time(h, kv, d, 1.0, length(pairs[0]))
        lengths = sorted((length(p) for p in pairs), reverse=True)
        best = table.time(h, kv, d, float(len(lengths)), 1.0)
        amortized = 0.0
        for k, s in enumerate(lengths, 1):
            t = table.time(h, kv, d, float(k), s)
            if t > best:
                best = t
            amortized += table.per_sequence(h, kv, d, s)
        return best if best > amortized else amortized

    def _decode_curve(self, n: int) -> Piecewise:
        """One layer's decode attention for n sequences as a function of their summed KV length: the measured grid
        where there is one, else the roofline (KV read or FLOPs, whichever binds) plus a fixed launch per layer."""
        key = (n, False)
        if key not in self._decode_curves:
            if self.decode_table is not None:
                curve = self.decode_table.curve(self.heads, self.kv_heads, self.model.head_dim, self.model.kv_dtype, n)
            else:
                curve = Piecewise(np.array([0.0, 1.0]), np.array([0.0, self.attn_decode_s_per_token]))
            self._decode_curves[key] = curve
        return self._decode_curves[key]

    def _window_curve(self, n: int) -> Piecewise | None:
        """A sliding-window layer's measured decode over the whole KV sum, where that window was measured; None:
        the full-attention curve over at most the window of each sequence."""
        key = (n, True)
        if key not in self._decode_curves:
            m, table, curve = self.model, self.decode_table, None
            if m.sliding_window_layers and table is not None and table.has_window(m.sliding_window):
                curve = table.curve(self.heads, self.kv_heads, m.head_dim, m.kv_dtype, n, m.sliding_window)
            self._decode_curves[key] = curve
        return self._decode_curves[key]

    def _decode_fixed(self) -> float:
        """The part of every decode step's attention that the curve leaves out: the roofline's launches."""
        return 0.0 if self.decode_table is not None else self.model.num_layers * self.calib.attention["overhead_s"]

    def _decode_kv(self, n: int, kv_sum: int) -> float:
        """All layers' decode attention over `kv_sum` cached tokens of n sequences, launches aside (sliding-window
        layers read at most the window of each)."""
        m, curve = self.model, self._decode_curve(n)
        t = m.full_attention_layers * curve.at(kv_sum) if m.full_attention_layers else 0.0
        if m.sliding_window_layers:
            windowed = self._window_curve(n)
            if windowed is not None:
                t = t + m.sliding_window_layers * windowed.at(kv_sum)
            else:
                cap = n * m.sliding_window
                t = t + m.sliding_window_layers * curve.at(kv_sum if kv_sum < cap else cap)
        return t

    def _decode_kv_many(self, n: int, kv_sums: np.ndarray) -> np.ndarray:
        """_decode_kv for each element (the same operations, so the same floats)."""
        m, curve = self.model, self._decode_curve(n)
        t = m.full_attention_layers * curve.at_many(kv_sums) if m.full_attention_layers else np.zeros(len(kv_sums))
        if m.sliding_window_layers:
            windowed = self._window_curve(n)
            if windowed is not None:
                t = t + m.sliding_window_layers * windowed.at_many(kv_sums)
            else:
                t = t + m.sliding_window_layers * curve.at_many(np.minimum(kv_sums, n * m.sliding_window))
        return t

    def _decode_attention(self, n: int, kv_sum: int) -> float:
        if n == 0:
            return 0.0
        return self._decode_kv(n, kv_sum) + self._decode_fixed()

    def _rank_time(self, rank: RankBatch, prefill: bool) -> float:
        tokens = rank.tokens
        if tokens == 0:
            return 0.0  # an idle rank's dummy step (vLLM runs one to join the collectives) hides under the busiest
        return (self._rank_linear(tokens, rank.logits, prefill) + self._prefill_attention(rank.chunks)
                + self._decode_attention(rank.decodes, rank.kv_sum))

    # ---- public ------------------------------------------------------------------------------------------------
    def kernel_sources(self) -> dict[str, str]:
        """Which source costs each kind of kernel on this plan's GPU."""
        family = f"roofline, {self.calib.key} family efficiencies (Vidur fit)"
        gemm = family
        if self.gemm_tables:
            table = next(iter(self.gemm_tables.values()))
            gemm = f"measured {'/'.join(self.gemm_tables)} table ({table.source}), else {family}"
            d = self.wdtype
            if self._formats[d][0] < 2.0 and compute_dtype(d) == "bf16" and self._bf16_table is not None:
                gemm += f"; {d} weights: the bf16 table less the weight bytes not read"

        def collective(c: object, measured: str) -> str:
            return (f"{measured} ({c.source})" if hasattr(c, "source")
                    else f"NCCL fit, {self.calib.key} family" if c is not None else "none")

        comm = collective(self.allreduce, "measured vLLM custom all-reduce and NCCL")
        gather = "none"
        if self.ffn_tp != self.tp and self.ffn_comm is not None:
            gather = (f"measured NCCL all-gather + reduce-scatter ({self.ffn_comm.source})"
                      if isinstance(self.ffn_comm, MeasuredGatherScatter)
                      else "as one all-reduce: " + collective(self.ffn_comm, "measured vLLM custom all-reduce and NCCL"))
        prefill = f"measured FlashAttention table ({self.attn_table.source})" if self.attn_table else family
        if self.attn_table and self.model.sliding_window_layers:
            prefill += (f", its {self.model.sliding_window}-token window measured" if self.attn_window_table
                        else f", its {self.model.sliding_window}-token window read at its (query, key) pairs")
        decode = f"measured decode-kernel table ({self.decode_table.source})" if self.decode_table else family
        attention = family if prefill == decode == family else f"prefill: {prefill}; decode: {decode}"
        experts = "none"
        if self.model.moe:
            width = self.model.moe.expert_intermediate_size / (1 if self.ep > 1 else self.ffn_tp)
            found = self._moe_curve(width)
            experts = (f"measured fused-MoE table ({self.moe_table.source}, {found[1]} kernel)" if found
                       else family)
        a2a = collective(self.alltoall, "measured NCCL")
        return {"gemm": gemm, "attention": attention, "moe_experts": experts,
                "elementwise": family,
                "allreduce": comm, "alltoall": a2a, "gather_scatter": gather}

    def _capped(self, t, tokens, pairs, kv):  # noqa: ANN001, ANN202  (floats or numpy arrays)
        """Step time(s) `t` stretched by the power cap for steps of this work (the replica's totals)."""
        w = self.work
        return t * self.power_cap.slowdown(w.flops(tokens, pairs), w.bytes(1, tokens, kv), t)

    def _capped_plan(self, t: float, plan: StepPlan) -> float:
        tokens, pairs, kv = 0, 0.0, 0
        for ranks in plan.micro_batches:
            for rank in ranks:
                a, b, c = rank_work(rank)
                tokens, pairs, kv = tokens + a, pairs + b, kv + c
        return float(self._capped(t, tokens, pairs, kv))

    def plan_time(self, plan: StepPlan) -> float:
        """Seconds for one step: the slowest micro-batch, each the busiest rank's side plus its union side."""
        if self.power_cap is not None:
            return self._capped_plan(self._plan_time(plan), plan)
        return self._plan_time(plan)

    def _plan_time(self, plan: StepPlan) -> float:
        worst = 0.0
        # The engine runs one forward for the step: with a prefill chunk anywhere, the whole step is a prefill step.
        prefill = any(rank.chunks for ranks in plan.micro_batches for rank in ranks)
        for ranks in plan.micro_batches:
            busiest, total, most, seqs = 0.0, 0, 0, 0
            for rank in ranks:
                t = self._rank_time(rank, prefill)
                if t > busiest:
                    busiest = t
                n = rank.tokens
                total += n
                if n > most:
                    most = n
                if rank.logits > seqs:
                    seqs = rank.logits
            if total:
                # Each rank's CPU (its own engine core) prepares its own sequences; the busiest one holds the rest.
                t = max(busiest + self._union(total, most, prefill)[0], self._floor(most, prefill)) + self._cpu(seqs)
                if t > worst:
                    worst = t
        return worst

    def moe_time(self, plan: StepPlan) -> float:
        """Seconds of `plan_time` spent in the routed experts and their communication (the slowest micro-batch's)."""
        out = 0.0
        prefill = any(rank.chunks for ranks in plan.micro_batches for rank in ranks)
        for ranks in plan.micro_batches:
            total = sum(rank.tokens for rank in ranks)
            if total:
                out = max(out, self._union(total, max(rank.tokens for rank in ranks), prefill)[1])
        return out

    def step_time(self, prefill_chunks: Sequence[tuple[int, int]], num_decode: int, decode_kv_sum: int,
                  num_logits: int | None = None) -> float:
        """Seconds for one step of a single attention rank and micro-batch: `prefill_chunks` are (new tokens, tokens
        already in the KV cache) per prefill; decodes: how many and the sum of their KV lengths. `num_logits`
        defaults to every sequence in the batch."""
        tokens = num_decode
        for c, _ in prefill_chunks:
            tokens += c
        if tokens == 0:
            return 0.0
        logits = num_decode + len(prefill_chunks) if num_logits is None else num_logits
        prefill = bool(prefill_chunks)
        t = self._rank_linear(tokens, logits, prefill)
        t += self._prefill_attention(prefill_chunks) + self._decode_attention(num_decode, decode_kv_sum)
        t = max(t + self._union(tokens, tokens, prefill)[0], self._floor(tokens, prefill)) + self._cpu(logits)
        if self.power_cap is not None:
            return self._capped_plan(t, StepPlan.single(prefill_chunks, num_decode, decode_kv_sum))
        return t

    # ---- pure decode steps: closed forms -------------------------------------------------------------------------
    def _decode_coeffs(self, n: int) -> tuple:
        """One rank alone: pure-decode step time = max(c0 + attention(kv_sum), lo) + cpu, lo being the eager launch
        floor (0 when the step runs as a CUDA graph) and cpu the CPU's own time; attention as in _decode_kv (its
        curve, full and window layers, the window's cap on the KV sum)."""
        cached = self._decode_cache.get(n)
        if cached is None:
            m = self.model
            windowed = self._window_curve(n)
            cached = (self._rank_decode_const(n) + self._union(n, n)[0], self._floor(n, False), self._cpu(n),
                      self._decode_curve(n).at, m.full_attention_layers, m.sliding_window_layers,
                      n * (m.sliding_window or 0), windowed.at if windowed is not None else None)
            self._decode_cache[n] = cached
        return cached

    def _rank_decode_const(self, n: int) -> float:
        """A rank's pure-decode GPU time that does not depend on KV lengths."""
        cached = self._rank_decode_cache.get(n)
        if cached is None:
            cached = self._rank_linear(n, n) + self._decode_fixed()
            self._rank_decode_cache[n] = cached
        return cached

    def decode_time(self, n: int, kv_sum: int) -> float:
        """Seconds for one pure-decode step of `n` sequences on one rank whose KV lengths (new token included) sum
        to kv_sum."""
        c0, lo, cpu, at, full, win, cap, wat = self._decode_coeffs(n)
        a = full * at(kv_sum) if full else 0.0  # the operations of _decode_kv, inlined: this runs every step
        if win:
            a = a + win * (wat(kv_sum) if wat is not None else at(kv_sum if kv_sum < cap else cap))
        t = c0 + a
        t = (max(t, lo) if lo else t) + cpu
        if self.power_cap is not None:
            return float(self._capped(t, n, kv_sum, kv_sum))
        return t

    def decode_times(self, n: int, kv_sums: np.ndarray) -> np.ndarray:
        """decode_time for each element of `kv_sums` (vectorised; bit-identical to the scalar form)."""
        c0, lo, cpu = self._decode_coeffs(n)[:3]
        t = c0 + self._decode_kv_many(n, kv_sums)
        t = (np.maximum(t, lo) if lo else t) + cpu
        if self.power_cap is not None:
            return self._capped(t, n, kv_sums, kv_sums)
        return t

    def decode_run_ends(self, n: int, kv_first: int, k: int, start: float):  # noqa: ANN201  (list or ndarray)
        """End times of k consecutive pure-decode steps of n sequences on one rank starting at `start`, the first
        step's KV sum being kv_first (it grows by n per step). Summed sequentially, as stepping would; short runs in
        plain Python (faster than numpy below a few dozen steps), long ones vectorised; both give identical floats."""
        if k <= 32 and self.power_cap is None:
            c0, lo, cpu, at, full, win, cap, wat = self._decode_coeffs(n)
            out, t, kv = [], start, kv_first
            for _ in range(k):
                a = full * at(kv) if full else 0.0  # decode_time's operations
                if win:
                    a = a + win * (wat(kv) if wat is not None else at(kv if kv < cap else cap))
                d = c0 + a
                t = t + ((max(d, lo) if lo else d) + cpu)
                out.append(t)
                kv += n
            return out
        ends = np.empty(k + 1)
        ends[0] = start
        ends[1:] = self.decode_times(n, np.arange(kv_first, kv_first + n * k, n, dtype=np.int64))
        return ends.cumsum()[1:]

    # ---- pure decode steps of several ranks / micro-batches --------------------------------------------------------
    def _lanes_union(self, ns: Sequence[int]) -> list[float | None]:
        """Union-side seconds of each micro-batch for decode counts `ns` (micro-batch-major, attn_dp ranks each);
        None for a micro-batch with nothing to do."""
        a = self.attn_dp
        out: list[float | None] = []
        for i in range(0, len(ns), a):
            group = ns[i:i + a]
            total = sum(group)
            out.append(self._union(total, max(group))[0] if total else None)
        return out

    def _lane_step_times(self, ns: Sequence[int], kvs: Sequence[int], k: int) -> np.ndarray:
        """Times of k pure-decode steps of every rank of every micro-batch (decode counts and first KV sums,
        micro-batch-major; each KV sum grows by its count per step): per micro-batch the busiest rank plus the
        union side, the slowest micro-batch setting each step."""
        a = self.attn_dp
        steps = np.arange(k, dtype=np.int64)
        worst = np.zeros(k)
        for g, u in enumerate(self._lanes_union(ns)):
            if u is None:
                continue
            busiest = np.zeros(k)
            lanes = range(g * a, g * a + a)
            for lane in lanes:
                n = ns[lane]
                if not n:
                    continue
                kv = kvs[lane] + n * steps
                t = self._rank_decode_const(n) + self._decode_kv_many(n, kv)
                busiest = np.maximum(busiest, t)
            mb = busiest + u
            most = max(ns[lane] for lane in lanes)
            floor = self._floor(most, False)
            worst = np.maximum(worst, (np.maximum(mb, floor) if floor else mb) + self._cpu(most))
        return worst

    def decode_time_lanes(self, ns: Sequence[int], kvs: Sequence[int]) -> float:
        """One pure-decode step of every rank of every micro-batch (decode counts and KV sums, micro-batch-major)."""
        return float(self._capped_lanes(self._lane_step_times(ns, kvs, 1), ns, kvs)[0])

    def _capped_lanes(self, times: np.ndarray, ns: Sequence[int], kvs: Sequence[int]) -> np.ndarray:
        if self.power_cap is None:
            return times
        n = sum(ns)
        kv = sum(kvs) + n * np.arange(len(times), dtype=np.int64)
        return self._capped(times, n, kv, kv)

    def decode_run_ends_lanes(self, ns: Sequence[int], kvs: Sequence[int], k: int, start: float) -> np.ndarray:
        """End times of k pure-decode steps of every lane starting at `start`: the same floats as k steps of
        decode_time_lanes added one by one."""
        ends = np.empty(k + 1)
        ends[0] = start
        ends[1:] = self._capped_lanes(self._lane_step_times(ns, kvs, k), ns, kvs)
        return ends.cumsum()[1:]

    def breakdown(self, prefill_chunks: Sequence[tuple[int, int]], num_decode: int, decode_kv_sum: int) -> dict:
        """Where the time of one single-rank step goes, for reports and sanity checks."""
        tokens = sum(c for c, _ in prefill_chunks) + num_decode
        logits = num_decode + len(prefill_chunks)
        prefill = bool(prefill_chunks)
        union, moe = self._union(tokens, tokens, prefill) if tokens else (0.0, 0.0)
        return {
            "tokens": tokens,
            "linear_and_comm_s": (self._rank_linear(tokens, logits, prefill) if tokens else 0.0) + union,
            "moe_s": moe,
            "prefill_attention_s": self._prefill_attention(prefill_chunks),
            "decode_attention_s": float(self._decode_attention(num_decode, decode_kv_sum)),
            "cpu_s": self._cpu(logits) if tokens else 0.0,  # per step and per sequence, after the forward
            "eager_floor_s": self._floor(tokens, prefill) if tokens else 0.0,  # the forward's least time
        }
