"""Time of one engine iteration (one forward pass of a mixed batch) for one replica under a TP x PP plan.

A pure function of the batch's shape: the prefill chunks (tokens, context already cached) and the decodes (count
and sum of their KV lengths). Kernel times are rooflines with efficiency curves fitted to measurements
(sim.cost.calibration); tensor-parallel all-reduces use the fitted NCCL alpha-beta model; a batch traverses the
pipeline stages one after another, plus one activation send per stage boundary (the runner keeps one micro-batch
per stage in flight with one virtual engine per stage, as vLLM does).

Per layer: QKV projection, attention (prefill compute-bound, decode KV-read memory-bound), output projection,
two norms, rotary embedding, residual adds, the MLP (dense gated GEMMs, or routed experts as a grouped GEMM plus
shared experts), and two all-reduces when TP > 1. Per step: the LM head over the sequences that sample a token,
and a fixed CPU/launch overhead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sim.hardware.calibration import Calibration, load_calibration
from sim.hardware.catalog import load_gpu
from sim.hardware.cluster import Cluster
from sim.hardware.collective import allreduce_model, alltoall_model, sendrecv_model
from sim.model.arch import ModelArch
from sim.model.dtypes import dtype_bytes
from sim.parallel.plan import Plan

ACT_BYTES = 2.0
_CALIBRATED_GPU = {"a100": "a100-80gb-sxm", "h100": "h100-sxm"}


class IterationCost:
    """Iteration time for one replica; memoises the parts that depend only on the token count."""

    def __init__(self, model: ModelArch, cluster: Cluster, plan: Plan, step_overhead_s: float = 0.0) -> None:
        self.model, self.cluster, self.plan = model, cluster, plan
        self.step_overhead_s = step_overhead_s
        gpu = cluster.gpu
        self.calib: Calibration = load_calibration(gpu.calibration)
        calib_link = load_gpu(_CALIBRATED_GPU[gpu.calibration]).scale_up_gbps
        self.peak = gpu.peak_flops(model.weight_dtype)
        self.peak_bf16 = gpu.peak_flops("bf16")
        self.bw = gpu.hbm_bytes_per_s
        self.wbytes = dtype_bytes(model.weight_dtype)
        self.ebytes = dtype_bytes(model.expert_weight_dtype or model.weight_dtype)
        self.kvbytes = dtype_bytes(model.kv_dtype)
        tp = plan.tp
        self.layers_per_stage = model.num_layers / plan.pp
        self.allreduce = None
        if tp > 1:
            self.allreduce = allreduce_model(cluster, self.calib, calib_link, tp, plan.tp_nodes or None)
        self.p2p = sendrecv_model(cluster, self.calib, calib_link,
                                  cluster.spans_nodes(plan.gpus_per_replica) or plan.tp_nodes > 1)
        self.heads = max(1, model.num_heads // tp)
        self.kv_heads = max(1, model.num_kv_heads // tp)
        # Attention data parallelism: each of attn_dp ranks attends over its own share of the batch.
        self.attn_dp = plan.attn_dp
        self.ep = plan.ep if model.moe else 1
        self.alltoall = None
        if self.ep > 1:
            self.alltoall = alltoall_model(cluster, self.calib, calib_link, self.ep, model.moe.top_k)
        # Without EP, data-parallel attention ranks gather their tokens for an FFN split over all tp x attn_dp
        # GPUs, then scatter them back: an all-gather and a reduce-scatter, the bytes of one all-reduce.
        self.ffn_tp = tp * plan.attn_dp if self.ep == 1 else tp
        self.ffn_comm = None
        if self.ffn_tp > 1:
            self.ffn_comm = allreduce_model(cluster, self.calib, calib_link, self.ffn_tp,
                                            plan.tp_nodes or None if self.ffn_tp == tp else None)
        # Expert-parallel load balance: tokens -> (busiest GPU's load over the mean, extra seconds per layer);
        # None is uniform routing (see sim/moe/balance.py).
        self.moe_balance: Callable[[float], tuple[float, float]] | None = None
        self._token_cache: dict[tuple[int, int], float] = {}
        self._decode_cache: dict[int, tuple[float, float, float]] = {}
        self._attn_coeffs()

    # ---- kernels -------------------------------------------------------------------------------------------------
    def _gemm(self, m: float, k: float, n: float, wbytes: float, weight_copies: float = 1.0) -> float:
        """One linear layer: m tokens times a k x n weight shard (weight_copies distinct weights read, for MoE)."""
        if m <= 0:
            return 0.0
        g = self.calib.gemm
        flops = 2.0 * m * k * n
        nbytes = wbytes * k * n * weight_copies + ACT_BYTES * (m * k + m * n)
        eff = g["compute_eff_max"] * m / (m + g["half_eff_tokens"])
        peak = self.peak if wbytes <= 1.0 else self.peak_bf16
        return max(flops / (peak * eff), nbytes / (self.bw * g["mem_eff"])) + g["overhead_s"]

    def _elementwise(self, nbytes: float) -> float:
        e = self.calib.elementwise
        return nbytes / (self.bw * e["mem_eff"]) + e["overhead_s"]

    def _attn_coeffs(self) -> None:
        """Per-layer attention: FLOPs per (query, key) pair and KV bytes per cached token read, on one GPU."""
        m = self.model
        if m.mla:
            r = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim
            self.flops_per_pair = 2.0 * self.heads * (r + m.mla.kv_lora_rank)
            self.kv_read_per_token = r * self.kvbytes
        else:
            self.flops_per_pair = 4.0 * self.heads * m.head_dim
            self.kv_read_per_token = 2.0 * self.kv_heads * m.head_dim * self.kvbytes
        a = self.calib.attention
        self._prefill_rates = (self.peak_bf16 * a["prefill_compute_eff"], self.bw * a["decode_mem_eff"],
                               a["overhead_s"])
        self.attn_decode_s_per_token = max(
            self.flops_per_pair / (self.peak_bf16 * a["prefill_compute_eff"]),
            self.kv_read_per_token / (self.bw * a["decode_mem_eff"]),
        )

    # ---- token-count-dependent part (memoised) -------------------------------------------------------------------
    def _share(self, seqs: int) -> float:
        """With attention data parallelism, the busiest rank's share of a batch of `seqs` sequences (balanced)."""
        if self.attn_dp == 1 or seqs <= 0:
            return 1.0
        return -(-seqs // self.attn_dp) / seqs

    def _dense_part(self, tokens: int, logits: int, share: float = 1.0) -> float:
        """Everything but attention for `tokens` tokens of which `logits` sample a token (all pipeline stages);
        the attention ranks' work is that of the busiest rank, holding `share` of the batch."""
        key = (tokens, logits, share)
        cached = self._token_cache.get(key)
        if cached is not None:
            return cached
        m, tp, h = self.model, self.plan.tp, self.model.hidden_size
        # Everything outside the MoE experts runs per attention rank, on its share of the tokens.
        t = float(tokens) * share
        # attention projections
        if m.mla:
            ml = m.mla
            proj = (self._gemm(t, h, ml.q_lora_rank, self.wbytes) if ml.q_lora_rank else 0.0)
            proj += self._gemm(t, ml.q_lora_rank or h, m.q_dim / tp, self.wbytes)
            proj += self._gemm(t, h, ml.kv_lora_rank + ml.qk_rope_head_dim, self.wbytes)
            proj += self._gemm(t, ml.kv_lora_rank, m.num_heads * (ml.qk_nope_head_dim + ml.v_head_dim) / tp,
                               self.wbytes)
        else:
            proj = self._gemm(t, h, (m.q_dim + 2 * m.num_kv_heads * m.head_dim) / tp, self.wbytes)
        proj += self._gemm(t, m.attn_out_dim / tp, h, self.wbytes)
        # norms, rope, residual adds, activation
        ew = self._elementwise(t * ACT_BYTES * (4 * h + 2 * (m.q_dim / tp) + 6 * h))
        # The FFN runs on the attention rank's tokens split by TP, or (attention-DP without EP) on every rank's
        # tokens split over all tp x attn_dp GPUs.
        ft, fw = (float(tokens), self.ffn_tp) if self.ffn_tp != tp else (t, tp)
        dense_mlp = self._gemm(ft, h, 2 * m.intermediate_size / fw, self.wbytes)
        dense_mlp += self._gemm(ft, m.intermediate_size / fw, h, self.wbytes)
        dense_mlp += self._elementwise(ft * ACT_BYTES * 3 * m.intermediate_size / fw)
        allreduce = self.allreduce.time(t * h * ACT_BYTES) if self.allreduce else 0.0
        ffn_comm = self.ffn_comm.time(ft * h * ACT_BYTES) if self.ffn_comm else 0.0
        moe_mlp = self._moe_mlp(float(tokens), share) if m.moe else 0.0
        if m.moe and self.ep == 1:
            moe_mlp += ffn_comm  # TP-split experts end in an all-reduce; EP ends in the combine all-to-all
        per_layer_common = proj + ew + allreduce
        total = (m.num_layers * per_layer_common + m.num_dense_layers * (dense_mlp + ffn_comm)
                 + m.num_moe_layers * moe_mlp)
        lm_head = self._gemm(float(logits) * share, h, m.vocab_size / tp, self.wbytes) if logits else 0.0
        pp = self.plan.pp
        p2p = (pp - 1) * self.p2p.time(t * h * ACT_BYTES) if pp > 1 else 0.0
        result = total + lm_head + p2p
        self._token_cache[key] = result
        return result

    def _moe_mlp(self, tokens: float, share: float = 1.0) -> float:
        """One MoE layer for the whole batch, on one GPU (uniform routing: every expert-parallel GPU equally
        loaded; the router and shared experts run on the busiest attention rank's `share` of the tokens)."""
        moe, tp, h = self.model.moe, self.plan.tp, self.model.hidden_size
        assert moe is not None
        e, k, f = moe.num_experts, moe.top_k, moe.expert_intermediate_size
        t_rank = tokens * share
        router = self._gemm(t_rank, h, e, 2.0)
        if self.ep > 1:
            # Each GPU holds e/ep whole experts and receives its share of the token copies.
            local = e / self.ep
            active = local * (1.0 - (1.0 - k / e) ** tokens)
            per_expert = tokens * k / self.ep / active
            width = f
            # Dispatch in FP8 and combine in BF16 (DeepEP's formats), each GPU sending its 1/ep of the copies.
            copies = tokens * k / self.ep
            extra = 0.0
            if self.moe_balance is not None:
                # Skewed routing: the layer waits for the busiest GPU, which computes and receives
                # `imbalance` times the mean; a balancing policy may add its own cost (weights it moves).
                imbalance, extra = self.moe_balance(tokens)
                copies *= imbalance
                per_expert *= imbalance
            comm = self.alltoall(copies * h * 1.0) + self.alltoall(copies * h * ACT_BYTES) + extra
        else:
            # Expected number of distinct experts hit by the tokens choosing k of e uniformly; each split by the
            # FFN's TP degree (over every attention rank's tokens when attention is data-parallel).
            ft = tokens if self.ffn_tp != tp else t_rank
            active = e * (1.0 - (1.0 - k / e) ** ft)
            per_expert = ft * k / active
            width = f / self.ffn_tp
            comm = 0.0
        experts = self.expert_time(per_expert * active, active, width)
        shared = 0.0
        if moe.shared_experts:
            fs = f * moe.shared_experts
            shared = self._gemm(t_rank, h, 2 * fs / tp, self.wbytes) + self._gemm(t_rank, fs / tp, h, self.wbytes)
        return router + experts + shared + comm

    def expert_time(self, copies: float, active: float, width: float | None = None) -> float:
        """One GPU's grouped GEMM over `copies` token copies spread across `active` experts (of intermediate size
        `width`, default the whole expert): each expert's problem is as efficient as its token count allows."""
        if copies <= 0 or active <= 0:
            return 0.0
        h = self.model.hidden_size
        width = self.model.moe.expert_intermediate_size if width is None else width
        overhead = self.calib.gemm["overhead_s"]
        per_expert = copies / active
        up = self._gemm(per_expert, h, 2 * width, self.ebytes) - overhead
        down = self._gemm(per_expert, width, h, self.ebytes) - overhead
        # The grouped GEMM runs `active` expert problems in one kernel: sum their times, one launch overhead.
        return (active * (up + down) + 2 * overhead
                + self._elementwise(active * per_expert * ACT_BYTES * 3 * width))

    # ---- attention -----------------------------------------------------------------------------------------------
    def _prefill_attention(self, chunks: Sequence[tuple[int, int]], share: float = 1.0) -> float:
        m = self.model
        flop_rate, byte_rate, overhead = self._prefill_rates
        window = m.sliding_window if m.sliding_window_layers else 0
        total = 0.0
        for c, ctx in chunks:
            pairs = c * (ctx + (c + 1) / 2.0)
            if window:
                pairs_win = c * min(ctx + (c + 1) / 2.0, window)
                pairs = (m.full_attention_layers * pairs + m.sliding_window_layers * pairs_win) / m.num_layers
            compute = self.flops_per_pair * pairs / flop_rate
            memory = self.kv_read_per_token * (ctx + c) / byte_rate
            total += (compute if compute > memory else memory) + overhead
        return total * m.num_layers * share

    def _decode_coeffs(self, n: int) -> tuple[float, float, float]:
        """Pure-decode step time = c0 + c_full * kv_sum + c_win * min(kv_sum, n * window), for n sequences."""
        cached = self._decode_cache.get(n)
        if cached is not None:
            return cached
        m = self.model
        share = self._share(n)
        per_token = self.attn_decode_s_per_token * share
        c0 = self._dense_part(n, n, share) + m.num_layers * self.calib.attention["overhead_s"] + self.step_overhead_s
        c_full = m.full_attention_layers * per_token
        c_win = m.sliding_window_layers * per_token
        self._decode_cache[n] = (c0, c_full, c_win)
        return c0, c_full, c_win

    def _decode_attention(self, n: int, kv_sum: int, share: float = 1.0) -> float:
        if n == 0:
            return 0.0
        m = self.model
        per_token = self.attn_decode_s_per_token * share
        t = m.full_attention_layers * per_token * kv_sum
        if m.sliding_window_layers:
            t += m.sliding_window_layers * per_token * min(kv_sum, n * m.sliding_window)
        return t + m.num_layers * self.calib.attention["overhead_s"]

    # ---- public ------------------------------------------------------------------------------------------------
    def step_time(self, prefill_chunks: Sequence[tuple[int, int]], num_decode: int, decode_kv_sum: int,
                  num_logits: int | None = None) -> float:
        """Seconds for one iteration. `prefill_chunks`: (new tokens, tokens already in the KV cache) per prefill;
        decodes: how many and the sum of their KV lengths. `num_logits` defaults to every sequence in the batch."""
        tokens = num_decode
        for c, _ in prefill_chunks:
            tokens += c
        if tokens == 0:
            return 0.0
        logits = num_decode + len(prefill_chunks) if num_logits is None else num_logits
        share = self._share(num_decode + len(prefill_chunks))
        t = self._token_cache.get((tokens, logits, share))
        if t is None:
            t = self._dense_part(tokens, logits, share)
        t += self._prefill_attention(prefill_chunks, share) + self._decode_attention(num_decode, decode_kv_sum, share)
        return t + self.step_overhead_s

    def decode_time(self, n: int, kv_sum: int) -> float:
        """Seconds for one pure-decode step of `n` sequences whose KV lengths (new token included) sum to kv_sum."""
        c0, c_full, c_win = self._decode_coeffs(n)
        t = c0 + c_full * kv_sum
        return t + c_win * min(kv_sum, n * self.model.sliding_window) if c_win else t

    def decode_times(self, n: int, kv_sums: np.ndarray) -> np.ndarray:
        """decode_time for each element of `kv_sums` (vectorised; bit-identical to the scalar form)."""
        c0, c_full, c_win = self._decode_coeffs(n)
        t = c0 + c_full * kv_sums
        return t + c_win * np.minimum(kv_sums, n * self.model.sliding_window) if c_win else t

    def decode_run_ends(self, n: int, kv_first: int, k: int, start: float):  # noqa: ANN201  (list or ndarray)
        """End times of k consecutive pure-decode steps of n sequences starting at `start`, the first step's KV sum
        being kv_first (it grows by n per step). Summed sequentially, as stepping would; short runs in plain Python
        (faster than numpy below a few dozen steps), long ones vectorised; both give identical floats."""
        if k <= 32:
            c0, c_full, c_win = self._decode_coeffs(n)
            window = n * (self.model.sliding_window or 0)
            out, t, kv = [], start, kv_first
            for _ in range(k):
                d = c0 + c_full * kv
                if c_win:
                    d = d + c_win * min(kv, window)
                t = t + d
                out.append(t)
                kv += n
            return out
        ends = np.empty(k + 1)
        ends[0] = start
        ends[1:] = self.decode_times(n, np.arange(kv_first, kv_first + n * k, n, dtype=np.int64))
        return ends.cumsum()[1:]

    def breakdown(self, prefill_chunks: Sequence[tuple[int, int]], num_decode: int, decode_kv_sum: int) -> dict:
        """Where the time of one iteration goes, for reports and sanity checks."""
        tokens = sum(c for c, _ in prefill_chunks) + num_decode
        logits = num_decode + len(prefill_chunks)
        share = self._share(logits)
        return {
            "tokens": tokens,
            "linear_and_comm_s": self._dense_part(tokens, logits, share),
            "prefill_attention_s": self._prefill_attention(prefill_chunks, share),
            "decode_attention_s": float(self._decode_attention(num_decode, decode_kv_sum, share)),
            "overhead_s": self.step_overhead_s,
        }
