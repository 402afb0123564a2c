"""Fit the cost model's efficiency curves to real GPU measurements and write them as a hardware calibration card.

Measurements: Vidur's per-operator CUDA timings and NCCL tables (microsoft/vidur, data/profiling, MIT), copied in
shared/data/calibration/vidur_profiling. Run `python -m sim.cost.calibration DATA_DIR` to refit and rewrite
hardware/calibration/{a100,h100}.toml and the measured kernel tables (sim/cost/kernel_tables.py); tests re-read the
measurements and check the shipped fit against them.

GEMM model (one per GPU, shared by every linear layer of every model):
    t = max(FLOPs / (peak * e_max * M / (M + m_half)), bytes / (HBM_bw * e_mem)) + t0
where M is the number of tokens in the batch. Elementwise ops are memory-bound: t = bytes / (HBM_bw * e) + t0.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

LINEAR_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = ("input_layernorm", "post_attention_layernorm", "attn_rope", "mlp_act", "add")
ACT_BYTES = 2  # the profiles ran in fp16/bf16


@dataclass(frozen=True, slots=True)
class OpSample:
    model: str
    op: str
    tp: int
    tokens: int
    flops: float
    bytes: float
    measured_s: float


def _shape(row: dict[str, str]) -> tuple[int, int, int, int, int, bool]:
    h, nh, nkv = int(row["n_embd"]), int(row["n_head"]), int(row["n_kv_head"])
    return h, nh, nkv, int(row["n_expanded_embd"]), int(row["num_tensor_parallel_workers"]), row["use_gated_mlp"] == "True"


def linear_shapes(h: int, nh: int, nkv: int, ffn: int, tp: int, gated: bool) -> dict[str, tuple[int, int]]:
    """(K, N) of each linear op's weight on one tensor-parallel shard."""
    hd = h // nh
    return {
        "attn_pre_proj": (h, (nh + 2 * nkv) * hd // tp),
        "attn_post_proj": (nh * hd // tp, h),
        "mlp_up_proj": (h, (2 if gated else 1) * ffn // tp),
        "mlp_down_proj": (ffn // tp, h),
    }


def elementwise_bytes(op: str, tokens: int, h: int, nh: int, nkv: int, ffn: int, tp: int) -> float:
    hd = h // nh
    per_token = {
        "input_layernorm": 2 * h,
        "post_attention_layernorm": 2 * h,
        "attn_rope": 2 * (nh + nkv) * hd // tp,
        "mlp_act": 3 * ffn // tp,
        "add": 3 * h,
    }[op]
    return float(tokens * per_token * ACT_BYTES)


def read_mlp_profiles(folder: Path) -> list[OpSample]:
    """Every linear and elementwise measurement under a Vidur compute profile folder (one GPU)."""
    samples: list[OpSample] = []
    for path in sorted(folder.glob("*/*/mlp.csv")):
        model = path.parent.name
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                h, nh, nkv, ffn, tp, gated = _shape(row)
                m = int(row["num_tokens"])
                for op, (k, n) in linear_shapes(h, nh, nkv, ffn, tp, gated).items():
                    t = float(row[f"time_stats.{op}.median"]) * 1e-3
                    samples.append(OpSample(model, op, tp, m, 2.0 * m * k * n, ACT_BYTES * (k * n + m * k + m * n), t))
                for op in ELEMENTWISE_OPS:
                    value = row.get(f"time_stats.{op}.median")
                    if value:
                        b = elementwise_bytes(op, m, h, nh, nkv, ffn, tp)
                        samples.append(OpSample(model, op, tp, m, 0.0, b, float(value) * 1e-3))
    return samples


def gemm_time(flops, nbytes, tokens, peak: float, bw: float, p: dict[str, float]):  # noqa: ANN001, ANN201
    eff = p["compute_eff_max"] * tokens / (tokens + p["half_eff_tokens"])
    return np.maximum(flops / (peak * eff), nbytes / (bw * p["mem_eff"])) + p["overhead_s"]


def elementwise_time(nbytes, bw: float, p: dict[str, float]):  # noqa: ANN001, ANN201
    return nbytes / (bw * p["mem_eff"]) + p["overhead_s"]


def fit_gemm(samples: list[OpSample], peak: float, bw: float) -> dict[str, float]:
    lin = [s for s in samples if s.op in LINEAR_OPS]
    f = np.array([s.flops for s in lin])
    b = np.array([s.bytes for s in lin])
    m = np.array([s.tokens for s in lin], float)
    y = np.array([s.measured_s for s in lin])
    keys = ("compute_eff_max", "half_eff_tokens", "mem_eff", "overhead_s")

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(gemm_time(f, b, m, peak, bw, dict(zip(keys, x)))) - np.log(y)

    fit = least_squares(resid, [0.7, 64.0, 0.7, 5e-6], bounds=([0.05, 0.0, 0.05, 0.0], [1.0, 8192.0, 1.0, 1e-3]))
    return dict(zip(keys, (float(v) for v in fit.x)))


def fit_elementwise(samples: list[OpSample], bw: float) -> dict[str, float]:
    ew = [s for s in samples if s.op in ELEMENTWISE_OPS]
    b = np.array([s.bytes for s in ew])
    y = np.array([s.measured_s for s in ew])
    keys = ("mem_eff", "overhead_s")

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(elementwise_time(b, bw, dict(zip(keys, x)))) - np.log(y)

    fit = least_squares(resid, [0.5, 3e-6], bounds=([0.01, 0.0], [1.0, 1e-3]))
    return dict(zip(keys, (float(v) for v in fit.x)))


# ---- attention (FlashAttention kernels, Llama-2-70B at TP2 on A100) -------------------------------------------------

@dataclass(frozen=True, slots=True)
class AttnSample:
    prefill: bool
    flops: float
    bytes: float
    measured_s: float


def read_attention_profile(path: Path) -> list[AttnSample]:
    out: list[AttnSample] = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            h, nh, nkv = int(row["n_embd"]), int(row["n_q_head"]), int(row["n_kv_head"])
            tp, hd = int(row["num_tensor_parallel_workers"]), h // nh
            heads, kv_heads = nh // tp, max(1, nkv // tp)
            batch, kv = int(row["batch_size"]), int(row["kv_cache_size"])
            if row["is_prefill"] == "True":
                c = int(row["prefill_chunk_size"])
                t = row["time_stats.attn_prefill.median"]
                flops = 4.0 * hd * heads * c * (kv + (c + 1) / 2) * batch
                nbytes = ACT_BYTES * 2 * kv_heads * hd * (kv + c) * batch
            else:
                t = row["time_stats.attn_decode.median"]
                flops = 4.0 * hd * heads * kv * batch
                nbytes = ACT_BYTES * 2 * kv_heads * hd * kv * batch
            if t:
                out.append(AttnSample(row["is_prefill"] == "True", flops, nbytes, float(t) * 1e-3))
    return out


def attention_time(flops, nbytes, peak: float, bw: float, p: dict[str, float], prefill: bool):  # noqa: ANN001, ANN201
    if prefill:
        return np.maximum(flops / (peak * p["prefill_compute_eff"]), nbytes / (bw * p["decode_mem_eff"])) + p["overhead_s"]
    return nbytes / (bw * p["decode_mem_eff"]) + p["overhead_s"]


def fit_attention(samples: list[AttnSample], peak: float, bw: float) -> dict[str, float]:
    keys = ("prefill_compute_eff", "decode_mem_eff", "overhead_s")
    groups = [(pf, [s for s in samples if s.prefill == pf]) for pf in (True, False)]

    def resid(x: np.ndarray) -> np.ndarray:
        p = dict(zip(keys, x))
        parts = []
        for pf, ss in groups:
            f = np.array([s.flops for s in ss])
            b = np.array([s.bytes for s in ss])
            y = np.array([s.measured_s for s in ss])
            parts.append(np.log(attention_time(f, b, peak, bw, p, pf)) - np.log(y))
        return np.concatenate(parts)

    fit = least_squares(resid, [0.5, 0.5, 1e-5], bounds=([0.01, 0.01, 0.0], [1.0, 1.0, 1e-3]))
    return dict(zip(keys, (float(v) for v in fit.x)))


# ---- collectives (NCCL) ---------------------------------------------------------------------------------------------

def read_collective(path: Path, column: str) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(num_workers, num_nodes) -> (message bytes, median seconds)."""
    by_key: dict[tuple[int, int], list[tuple[float, float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            n, per_node = int(row["num_workers"]), int(row["devices_per_node"])
            by_key.setdefault((n, n // per_node), []).append(
                (float(row["size"]), float(row[f"time_stats.{column}.median"]) * 1e-3))
    return {k: (np.array([s for s, _ in v]), np.array([t for _, t in v])) for k, v in sorted(by_key.items())}


def ring_allreduce_time(nbytes, n: int, alpha_s: float, busbw_gbps: float):  # noqa: ANN001, ANN201
    return alpha_s + 2.0 * (n - 1) / n * nbytes / (busbw_gbps * 1e9)


def fit_alpha_beta(sizes: np.ndarray, times: np.ndarray, factor: float) -> tuple[float, float]:
    """Least-squares (in log space) alpha and bandwidth for t = alpha + factor * size / bw."""

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(x[0] + factor * sizes / (x[1] * 1e9)) - np.log(times)

    fit = least_squares(resid, [2e-5, 100.0], bounds=([0.0, 1.0], [1e-2, 5000.0]))
    return float(fit.x[0]), float(fit.x[1])


def fit_allreduce(path: Path) -> dict[tuple[int, int], tuple[float, float]]:
    """(workers, nodes) -> (alpha seconds, bus bandwidth GB/s) of a ring all-reduce."""
    data = read_collective(path, "all_reduce")
    return {key: fit_alpha_beta(s, t, 2.0 * (key[0] - 1) / key[0]) for key, (s, t) in data.items()}


def fit_sendrecv(path: Path) -> dict[tuple[int, int], tuple[float, float]]:
    return {key: fit_alpha_beta(s, t, 1.0) for key, (s, t) in read_collective(path, "send_recv").items()}


# ---- NCCL collectives (APEX+ profiles: all_gather, all_reduce, alltoall, reduce_scatter, sendrecv) --------------

def read_apex_nccl(folder: Path, collective: str) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(GPUs, nodes) -> (message bytes, seconds) from an APEX+ profile CSV (size in KB, time in us)."""
    by_key: dict[tuple[int, int], list[tuple[float, float]]] = {}
    with open(folder / f"{collective}.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            nodes, per_node = int(row["num_nodes"]), int(row["num_gpus_per_node"])
            size = float(row["size(kb)"]) * 1024
            if size <= 0:
                continue
            by_key.setdefault((nodes * per_node, nodes), []).append((size, float(row["time(us)"]) * 1e-6))
    # A real sweep has a dozen sizes or more; a shape seen a few times only comes from the V100 file's shifted rows.
    return {k: (np.array([s for s, _ in v]), np.array([t for _, t in v])) for k, v in sorted(by_key.items())
            if len(v) >= 5}


def fit_apex_nccl(folder: Path) -> dict[str, dict[tuple[int, int], tuple[float, float]]]:
    """collective -> (GPUs, nodes) -> (alpha seconds, bus bandwidth GB/s)."""
    from sim.hardware.collective import COLLECTIVE_FACTORS

    out: dict[str, dict[tuple[int, int], tuple[float, float]]] = {}
    for coll, factor in COLLECTIVE_FACTORS.items():
        if not (folder / f"{coll}.csv").exists():
            continue
        out[coll] = {key: _fit_floor_then_bandwidth(s, t, factor(key[0]))
                     for key, (s, t) in read_apex_nccl(folder, coll).items()}
    return out


def _fit_floor_then_bandwidth(sizes: np.ndarray, times: np.ndarray, factor: float) -> tuple[float, float]:
    """alpha = the latency floor (median time of the smallest messages), then the bandwidth that fits the rest.

    A joint fit lets a few large messages pull alpha far above the flat small-message floor (all-to-all on H100
    measured 15 us where a joint fit says 33 us)."""
    order = np.argsort(sizes)
    alpha = float(np.median(times[order[:3]]))

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(alpha + factor * sizes / (x[0] * 1e9)) - np.log(times)

    fit = least_squares(resid, [100.0], bounds=([1.0], [5000.0]))
    return alpha, float(fit.x[0])


# ---- the card ---------------------------------------------------------------------------------------------------

def calibrate(gpu_key: str, data_root: Path) -> str:
    """Fit everything for one GPU ('a100' or 'h100') and return the calibration card as TOML text."""
    from sim.hardware import load_gpu

    gpu = load_gpu({"a100": "a100-80gb-sxm", "h100": "h100-sxm"}[gpu_key])
    peak, bw = gpu.peak_flops("bf16"), gpu.hbm_bytes_per_s
    vidur = data_root / "vidur_profiling"
    samples = read_mlp_profiles(vidur / "compute" / gpu_key)
    gemm = fit_gemm(samples, peak, bw)
    ew = fit_elementwise(samples, bw)
    # Only A100 has attention kernel timings; H100 reuses the A100 efficiencies (fractions of its own peaks).
    a100 = load_gpu("a100-80gb-sxm")
    attn = fit_attention(read_attention_profile(vidur / "compute/a100/meta-llama/Llama-2-70b-hf/attention.csv"),
                         a100.peak_flops("bf16"), a100.hbm_bytes_per_s)
    ar = fit_allreduce(vidur / "network" / f"{gpu_key}_dgx" / "all_reduce.csv")
    sr = fit_sendrecv(vidur / "network" / f"{gpu_key}_dgx" / "send_recv.csv")
    apex = {"h100": "H100-SXM-80GB"}.get(gpu_key)
    nccl = fit_apex_nccl(data_root / "apex_nccl" / apex) if apex else {}

    def fmt(d: dict[str, float]) -> str:
        return "\n".join(f"{k} = {v:.6g}" for k, v in d.items())

    def table(d: dict[tuple[int, int], tuple[float, float]], bw: str) -> str:
        return "\n".join(f'"{n}x{nodes}" = {{ alpha_s = {a:.6g}, {bw} = {b:.6g} }}' for (n, nodes), (a, b) in d.items())

    return f"""# Generated by `python -m sim.cost.calibration` -- do not edit by hand; rerun it instead.
# Fitted to Vidur's measured operator timings and NCCL tables (microsoft/vidur, data/profiling, MIT licence),
# copied in shared/data/calibration/vidur_profiling/{{compute/{gpu_key},network/{gpu_key}_dgx}}.
gpu = "{gpu_key}"
source = "microsoft/vidur data/profiling (compute/{gpu_key}, network/{gpu_key}_dgx); attention from compute/a100 Llama-2-70B TP2"

[gemm]
{fmt(gemm)}

[elementwise]
{fmt(ew)}

[attention]
{fmt(attn)}

# keys: "<GPUs>x<nodes>"
[allreduce]
{table(ar, "busbw_gbps")}

[sendrecv]
{table(sr, "bw_gbps")}
""" + "".join(f"""
# {coll}: APEX+ NCCL profile (microsoft/apex_plus, profile/comm/{apex}, MIT), bus bandwidth per GPU
[nccl.{coll}]
{table(fits, "busbw_gbps")}
""" for coll, fits in nccl.items())


def main(argv: list[str]) -> None:
    """Refit everything the shipped cost model reads: the roofline families and the measured kernel tables."""
    from sim.cost import kernel_tables

    data_root = Path(argv[0]) if argv else Path("../shared/data/calibration")
    out = Path(__file__).resolve().parents[2] / "hardware" / "calibration"
    for key in ("a100", "h100"):
        (out / f"{key}.toml").write_text(calibrate(key, data_root))
        print(f"wrote {out / f'{key}.toml'}")
    kernel_tables.main([str(data_root)])


if __name__ == "__main__":
    main(sys.argv[1:])
