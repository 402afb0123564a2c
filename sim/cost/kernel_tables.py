"""Reduce the measured kernel tables (aiconfigurator, collected inside vLLM images) to the small grids fleetsim ships,
and measure how well they predict rows held apart.

    python -m sim.cost.kernel_tables [DATA_DIR]     # rewrites hardware/calibration/kernels/<gpu>.npz

Source: ai-dynamo/aiconfigurator @ 095f58a5, aic-core/src/aiconfigurator_core/systems/<gpu>/ (Apache-2.0), copied
in shared/data/calibration/aiconfigurator_kernels. The shipped grids are derived from it (log-latencies on a subset
of the measured shapes); hardware/calibration/kernels/README.md names the files and versions.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sim.cost.kernels.gemm import GemmTable

# The GPUs measured, and the vLLM release whose kernels are kept (the newest measured for all three).
GPUS = {"h100_sxm": "0.24.0", "h200_sxm": "0.24.0", "b200_sxm": "0.24.0"}
# Weight precision -> the table's gemm_dtype and, where several kernels were measured, the one vLLM uses by default.
PRECISIONS = {"bf16": ("bfloat16", ("torch.nn.functional.linear", "vllm_default")),
              "fp8": ("fp8", ("CutlassFP8ScaledMMLinearKernel", "vllm_default"))}


def read_gemm(data_root: Path, gpu: str, version: str, precision: str) -> pl.DataFrame:
    """Measured GEMMs of one GPU and precision: columns m, n, k and seconds."""
    path = data_root / "aiconfigurator_kernels" / gpu / "gemm" / "vllm" / version / "gemm_perf.parquet"
    dtype, kernels = PRECISIONS[precision]
    df = pl.read_parquet(path).filter(pl.col("gemm_dtype") == dtype)
    kernel = next(k for k in kernels if k in set(df["kernel_source"]))
    return (df.filter(pl.col("kernel_source") == kernel)
            .group_by("m", "n", "k").agg((pl.col("latency").min() * 1e-3).alias("seconds")))


def _m_axis(values: list[int]) -> list[int]:
    """The measured token counts without the 'one more' variants (33, 49, ... measure padding, not scaling)."""
    present = set(values)
    return sorted(v for v in present if v <= 17 or v - 1 not in present)


def gemm_grid(df: pl.DataFrame, m: list[int], n: list[int], k: list[int], source: str) -> GemmTable:
    """The table on the given axes. A cell the measurements lack is filled from its neighbours along m (in log); a
    weight shape never measured (the largest n x k) from the nearest smaller one, scaled by the work added."""
    cube = np.full((len(m), len(n), len(k)), np.nan)
    mi, ni, ki = ({v: i for i, v in enumerate(axis)} for axis in (m, n, k))
    for mm, nn, kk, s in df.select("m", "n", "k", "seconds").iter_rows():
        if mm in mi and nn in ni and kk in ki:
            cube[mi[mm], ni[nn], ki[kk]] = np.log(s)
    logm = np.log(np.array(m, float))
    empty = []
    for j in range(len(n)):
        for l in range(len(k)):
            col = cube[:, j, l]
            ok = ~np.isnan(col)
            if not ok.any():
                empty.append((j, l))
            elif not ok.all():
                cube[:, j, l] = np.interp(logm, logm[ok], col[ok])
    for j, l in empty:
        measured = [(jj, ll) for jj in range(j + 1) for ll in range(l + 1) if (jj, ll) not in empty]
        if not measured:
            raise ValueError(f"no measurement for n={n[j]}, k={k[l]} nor any smaller shape")
        jj, ll = max(measured, key=lambda c: n[c[0]] * k[c[1]])
        cube[:, j, l] = cube[:, jj, ll] + np.log(n[j] * k[l] / (n[jj] * k[ll]))
    cube = _drop_spikes(cube)
    # More tokens never take less time: non-decreasing along m. (Along n and k the kernels' own tile choices make some
    # larger weights faster, and a run never changes its weights.)
    cube = _monotone(cube, (0,))
    return GemmTable(np.array(m, float), np.array(n, float), np.array(k, float), cube, source)


def _isotonic(y: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to `y` in least squares (pool adjacent violators): a measured point out of
    order is averaged with its neighbours instead of dragging every smaller shape down to it."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in y:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    return np.concatenate([np.full(int(c), t / c) for t, c in blocks])


def _monotone(cube: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Make the grid non-decreasing along each of `axes`: isotonic passes, then a running maximum to remove the
    last slight violations the alternating passes leave."""
    cube = cube.copy()
    for _ in range(3):
        for axis in axes:
            cube = np.apply_along_axis(_isotonic, axis, cube)
    for axis in axes:
        cube = np.maximum.accumulate(cube, axis=axis)
    return cube


SPIKE = np.log(1.3)  # a cell this much slower than both neighbours on an axis is a measurement glitch


def _drop_spikes(cube: np.ndarray, axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """Replace isolated slow cells (more than 30% above the log-midpoint of both neighbours along an axis) by that
    midpoint. The tables hold such one-off glitches: B200's FP8 GEMM of 8 tokens x 4096 x 2560 takes 13.0 us where
    2048 and 3072 take 6.6 and 8.0; of one token x 4096 x 4096, 24.6 us where two tokens take 9.2."""
    cube = cube.copy()
    for axis in axes:
        c = np.moveaxis(cube, axis, 0)
        mid = (c[:-2] + c[2:]) / 2
        inner = c[1:-1]
        spike = (inner - mid > SPIKE) & (inner > c[:-2]) & (inner > c[2:])
        inner[spike] = mid[spike]
        first_spike = c[0] - c[1] > SPIKE  # the smallest shape slower than the next: an outlier too
        c[0][first_spike] = c[1][first_spike]
    return cube


@dataclass(frozen=True)
class HeldOut:
    gpu: str
    operator: str
    points: int
    median: float
    p90: float


def validate_gemm(df: pl.DataFrame, gpu: str, precision: str) -> HeldOut:
    """Build the grid without every third n, every third k and every other m (from 32 tokens up), and report the
    relative error of its predictions on every measured row it did not see."""
    m_all = _m_axis(df["m"].unique().to_list())
    n_all, k_all = sorted(df["n"].unique().to_list()), sorted(df["k"].unique().to_list())
    held_n = set(n_all[1:-1:3])
    held_k = set(k_all[2:-1:3])
    big = [v for v in m_all if v >= 32]
    held_m = set(big[1:-1:2])
    m, n, k = ([v for v in axis if v not in held] for axis, held in ((m_all, held_m), (n_all, held_n),
                                                                      (k_all, held_k)))
    fit = df.filter(pl.col("m").is_in(m) & pl.col("n").is_in(n) & pl.col("k").is_in(k))
    table = gemm_grid(fit, m, n, k, "validation")
    test = df.filter(pl.col("m").is_in(m_all) & (pl.col("m").is_in(list(held_m)) | pl.col("n").is_in(list(held_n))
                                                  | pl.col("k").is_in(list(held_k))))
    err = np.array([abs(table.time(mm, kk, nn) / s - 1) for mm, nn, kk, s in
                    test.select("m", "n", "k", "seconds").iter_rows()])
    return HeldOut(gpu, f"gemm {precision}", len(err), float(np.median(err)), float(np.percentile(err, 90)))


# ---- all-reduce: vLLM's custom kernel (CUDA-graph and eager) and NCCL -------------------------------------------
AR_GPUS = (2, 4, 8)


def read_allreduce(data_root: Path, gpu: str, version: str) -> pl.DataFrame:
    """Measured all-reduces of BF16 tensors: columns kind (graph, eager, nccl), gpus, bytes, seconds. The tables give
    message sizes in elements (aiconfigurator's collector shapes the tensor as [size / 4096, 4096])."""
    base = data_root / "aiconfigurator_kernels" / gpu / "comm"
    custom = pl.read_parquet(base / "vllm" / version / "custom_allreduce_perf.parquet")
    custom = custom.select(pl.col("backend").str.replace("vllm_", "").alias("kind"), pl.col("num_gpus").alias("gpus"),
                           (pl.col("message_size") * 2).alias("bytes"), (pl.col("latency") * 1e-3).alias("seconds"))
    newest = max((d for d in (base / "nccl").iterdir() if (d / "nccl_perf.parquet").exists()),
                 key=lambda d: tuple(int(x) for x in d.name.split(".")))
    nccl = pl.read_parquet(newest / "nccl_perf.parquet").filter(
        (pl.col("op_name") == "all_reduce") & (pl.col("nccl_dtype") == "half"))
    nccl = nccl.select(pl.lit("nccl").alias("kind"), pl.col("num_gpus").alias("gpus"),
                       (pl.col("message_size") * 2).alias("bytes"), (pl.col("latency") * 1e-3).alias("seconds"))
    both = pl.concat([custom, nccl]).group_by("kind", "gpus", "bytes").agg(pl.col("seconds").min())
    return both.sort("kind", "gpus", "bytes")


def _never_faster_when_larger(seconds: np.ndarray) -> np.ndarray:
    """Log-seconds by increasing message size, each the fastest measured at that size or above: a collective can
    always pad a message to a larger one, so a smaller message never needs longer."""
    return np.flip(np.minimum.accumulate(np.flip(np.log(seconds))))


def allreduce_curves(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per kind and GPU count: message sizes and log-seconds, made non-decreasing in the size."""
    out = {}
    for kind in ("graph", "eager", "nccl"):
        for n in AR_GPUS:
            d = df.filter((pl.col("kind") == kind) & (pl.col("gpus") == n)).sort("bytes")
            log_s = _never_faster_when_larger(d["seconds"].to_numpy())
            out[f"ar_{kind}_{n}_bytes"] = d["bytes"].to_numpy().astype(float)
            out[f"ar_{kind}_{n}_log_s"] = log_s
    return out


def validate_allreduce(df: pl.DataFrame, gpu: str) -> HeldOut:
    """Every other message size held apart, predicted from its neighbours (log-log), over all kinds and GPU counts."""
    from sim.cost.kernels.curve import Curve

    errors = []
    for kind in ("graph", "eager", "nccl"):
        for n in AR_GPUS:
            d = df.filter((pl.col("kind") == kind) & (pl.col("gpus") == n)).sort("bytes")
            sizes, secs = d["bytes"].to_numpy().astype(float), d["seconds"].to_numpy()
            keep = np.arange(len(sizes)) % 2 == 0
            keep[-1] = True
            curve = Curve(sizes[keep], np.log(secs[keep]))
            errors += [abs(curve.time(b) / s - 1) for b, s in zip(sizes[~keep], secs[~keep])]
    err = np.array(errors)
    return HeldOut(gpu, "all-reduce", len(err), float(np.median(err)), float(np.percentile(err, 90)))


# ---- NCCL's all-to-all (expert parallelism), all-gather and reduce-scatter (attention DP), inside one node ----
# NCCL collectives read from the same tables: name in the tables -> prefix of the shipped curves.
NCCL_OPS = {"alltoall": "a2a", "all_gather": "ag", "reduce_scatter": "rs"}


def read_nccl(data_root: Path, gpu: str, op: str = "alltoall") -> pl.DataFrame:
    """Measured NCCL collectives `op` (alltoall, all_gather or reduce_scatter) of 16-bit tensors on 2, 4 and 8 GPUs
    of one node, the newest NCCL measured: columns gpus, bytes, seconds and nccl (the version). The tables give
    nccl-tests' size in elements (aiconfigurator's collect_nccl.py divides the bytes by the element size); that
    size is each GPU's whole buffer: what an all-to-all sends, what an all-gather receives (every GPU's share),
    what a reduce-scatter reduces."""
    base = data_root / "aiconfigurator_kernels" / gpu / "comm" / "nccl"
    newest = max((d for d in base.iterdir() if (d / "nccl_perf.parquet").exists()),
                 key=lambda d: tuple(int(x) for x in d.name.split(".")))
    df = pl.read_parquet(newest / "nccl_perf.parquet").filter(
        (pl.col("op_name") == op) & (pl.col("nccl_dtype") == "half"))
    return (df.select(pl.col("num_gpus").alias("gpus"), (pl.col("message_size") * 2).alias("bytes"),
                      (pl.col("latency") * 1e-3).alias("seconds"))
            .group_by("gpus", "bytes").agg(pl.col("seconds").min()).sort("gpus", "bytes")
            .with_columns(pl.lit(newest.name).alias("nccl")))


def read_alltoall(data_root: Path, gpu: str, version: str | None = None) -> pl.DataFrame:
    """NCCL's measured all-to-alls (the vLLM `version` does not apply)."""
    return read_nccl(data_root, gpu, "alltoall")


def nccl_curves(df: pl.DataFrame, prefix: str = "a2a") -> dict[str, np.ndarray]:
    """Per GPU count: buffer sizes and log-seconds, a size never faster than a smaller one (as the all-reduce's)."""
    out = {f"{prefix}_source": np.array(f"NCCL {df['nccl'][0]}")}
    for n in AR_GPUS:
        d = df.filter(pl.col("gpus") == n).sort("bytes")
        out[f"{prefix}_{n}_bytes"] = d["bytes"].to_numpy().astype(float)
        out[f"{prefix}_{n}_log_s"] = _never_faster_when_larger(d["seconds"].to_numpy())
    return out


def validate_nccl(df: pl.DataFrame, gpu: str, name: str = "all-to-all") -> HeldOut:
    """Every other buffer size held apart, predicted from its neighbours (log-log), over the GPU counts."""
    from sim.cost.kernels.curve import Curve

    errors = []
    for n in AR_GPUS:
        d = df.filter(pl.col("gpus") == n).sort("bytes")
        sizes, secs = d["bytes"].to_numpy().astype(float), d["seconds"].to_numpy()
        keep = np.arange(len(sizes)) % 2 == 0
        keep[-1] = True
        curve = Curve(sizes[keep], _never_faster_when_larger(secs[keep]))
        errors += [abs(curve.time(b) / s - 1) for b, s in zip(sizes[~keep], secs[~keep])]
    err = np.array(errors)
    return HeldOut(gpu, name, len(err), float(np.median(err)), float(np.percentile(err, 90)))


def validate_alltoall(df: pl.DataFrame, gpu: str) -> HeldOut:
    return validate_nccl(df, gpu, "all-to-all")


def read_allgather(data_root: Path, gpu: str, version: str | None = None) -> pl.DataFrame:
    return read_nccl(data_root, gpu, "all_gather")


def validate_allgather(df: pl.DataFrame, gpu: str) -> HeldOut:
    return validate_nccl(df, gpu, "all-gather")


def read_reducescatter(data_root: Path, gpu: str, version: str | None = None) -> pl.DataFrame:
    return read_nccl(data_root, gpu, "reduce_scatter")


def validate_reducescatter(df: pl.DataFrame, gpu: str) -> HeldOut:
    return validate_nccl(df, gpu, "reduce-scatter")


# ---- prefill attention (FlashAttention over fresh sequences), per head shape ----------------------------------------
def read_context_attention(data_root: Path, gpu: str, version: str, window: int = 0) -> pl.DataFrame:
    """Measured prefill attention with a BF16 KV cache, with no sliding window (0) or the given one: heads,
    kv_heads, head_dim, b, s and seconds (the fastest kernel measured for each point)."""
    path = data_root / "aiconfigurator_kernels" / gpu / "attention" / "vllm" / version / "context_attention_perf.parquet"
    df = pl.read_parquet(path).filter((pl.col("kv_cache_dtype") == "bfloat16") & (pl.col("window_size") == window))
    return df.group_by(pl.col("num_heads").alias("heads"), pl.col("num_key_value_heads").alias("kv_heads"),
                       "head_dim", pl.col("batch_size").alias("b"), pl.col("isl").alias("s")).agg(
        (pl.col("latency").min() * 1e-3).alias("seconds"))


def attention_grids(df: pl.DataFrame, b_axis: list[int] | None = None,
                    s_axis: list[int] | None = None) -> dict[str, np.ndarray]:
    """Per head shape, log-latency on the (b, s) grid: cells never measured (the biggest b x s) scaled from the
    nearest smaller batch by the work added; then made non-decreasing along both axes."""
    b_axis = b_axis or sorted(df["b"].unique().to_list())
    s_axis = s_axis or sorted(df["s"].unique().to_list())
    configs = sorted(df.select("heads", "kv_heads", "head_dim").unique().rows())
    grids = np.full((len(configs), len(b_axis), len(s_axis)), np.nan)
    bi, si = {v: i for i, v in enumerate(b_axis)}, {v: i for i, v in enumerate(s_axis)}
    ci = {c: i for i, c in enumerate(configs)}
    for h, kv, d, b, s, sec in df.select("heads", "kv_heads", "head_dim", "b", "s", "seconds").iter_rows():
        if b in bi and s in si:
            grids[ci[(h, kv, d)], bi[b], si[s]] = math.log(sec)
    for g in grids:
        for j in range(len(s_axis)):
            for i in range(len(b_axis)):
                if np.isnan(g[i, j]):
                    known = [k for k in range(i) if not np.isnan(g[k, j])]
                    if known:
                        k = known[-1]
                        g[i, j] = g[k, j] + math.log(b_axis[i] / b_axis[k])
        for i in range(len(b_axis)):
            row = g[i]
            if np.isnan(row).any():
                ok = ~np.isnan(row)
                logs = np.log(np.array(s_axis, float))
                row[~ok] = np.interp(logs[~ok], logs[ok], row[ok]) if ok.any() else 0.0
    grids = _monotone(_drop_spikes(grids, (1, 2)), (1, 2))  # axis 0 lists head shapes, not a dimension
    dense, grids = _densify_lengths(np.array(s_axis, float), grids)
    return {"attn_configs": np.array(configs, float), "attn_b": np.array(b_axis, float),
            "attn_s": dense, "attn_log_s": grids}


DENSE_LENGTHS = 48  # lengths added between the measured ones


def _densify_lengths(s_axis: np.ndarray, grids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the length axis between measured points with a monotone cubic (PCHIP) through them in log-log space.
    Prefill attention bends from a launch floor (short sequences) to s^2 growth, and the measured lengths are sparse
    at the bend (1, 16, 32, ...): straight log-log lines across it over-predict, the cubic follows it; being
    monotone, it never makes a longer sequence cheaper. Runtime interpolation stays log-log linear on the dense axis."""
    from scipy.interpolate import PchipInterpolator

    logs = np.log(s_axis)
    dense = np.union1d(logs, np.linspace(logs[0], logs[-1], DENSE_LENGTHS))
    values = PchipInterpolator(logs, grids, axis=2)(dense)
    return np.exp(dense), np.maximum.accumulate(values, axis=2)


def context_windows(data_root: Path, gpu: str, version: str) -> list[int]:
    """The sliding windows prefill attention was measured with."""
    path = data_root / "aiconfigurator_kernels" / gpu / "attention" / "vllm" / version / "context_attention_perf.parquet"
    return sorted(w for w in pl.read_parquet(path, columns=["window_size"])["window_size"].unique().to_list() if w)


def validate_attention(df: pl.DataFrame, gpu: str) -> HeldOut:
    """Every other interior sequence length and batch size held apart, predicted from the rest of each head shape's
    grid."""
    err = _attention_errors(df)
    return HeldOut(gpu, "prefill attention", len(err), float(np.median(err)), float(np.percentile(err, 90)))


def read_window_attention(data_root: Path, gpu: str, version: str) -> dict[int, pl.DataFrame]:
    """Measured sliding-window prefill attention, per window."""
    return {w: read_context_attention(data_root, gpu, version, w) for w in context_windows(data_root, gpu, version)}


def validate_window_attention(dfs: dict[int, pl.DataFrame], gpu: str) -> HeldOut:
    """validate_attention on each window's grids, the errors pooled."""
    err = np.concatenate([_attention_errors(df, 1.0) for df in dfs.values()])
    return HeldOut(gpu, "sliding-window prefill attention", len(err), float(np.median(err)),
                   float(np.percentile(err, 90)))


def _attention_errors(df: pl.DataFrame, length_power: float = 2.0) -> np.ndarray:
    from sim.cost.kernels.attention import AttentionTable

    b_all, s_all = sorted(df["b"].unique().to_list()), sorted(df["s"].unique().to_list())
    held_b, held_s = set(b_all[1:-1:2]), set(s_all[1:-1:2])
    b_fit, s_fit = [v for v in b_all if v not in held_b], [v for v in s_all if v not in held_s]
    fit = df.filter(pl.col("b").is_in(b_fit) & pl.col("s").is_in(s_fit))
    g = attention_grids(fit, b_fit, s_fit)
    table = AttentionTable(g["attn_configs"], g["attn_b"], g["attn_s"], g["attn_log_s"], "validation",
                           length_power)
    test = df.filter(pl.col("b").is_in(list(held_b)) | pl.col("s").is_in(list(held_s)))
    return np.array([abs(table.time(h, kv, d, b, s) / sec - 1) for h, kv, d, b, s, sec in
                     test.select("heads", "kv_heads", "head_dim", "b", "s", "seconds").iter_rows()])


# ---- decode attention (FlashAttention decode over cached KV), per head shape and KV precision ---------------------
def read_generation_attention(data_root: Path, gpu: str, version: str) -> pl.DataFrame:
    """Measured decode attention, by the kernel vLLM picks on the GPU (FlashAttention 3 on Hopper, FlashInfer's
    TRT-LLM decode on Blackwell; Hopper's FA4 rows, head dim 512 only, are left out): heads, kv_heads, head_dim, kv
    (0 BF16, 1 FP8 KV cache), window (0: full attention, else the sliding window), b, s (cached tokens per sequence)
    and seconds per layer."""
    from sim.cost.kernels.decode_attention import KV_DTYPES

    path = (data_root / "aiconfigurator_kernels" / gpu / "attention" / "vllm" / version
            / "generation_attention_perf.parquet")
    df = pl.read_parquet(path).filter(pl.col("kernel_source") != "vllm_flash_attn_fa4")
    codes = {"bfloat16": KV_DTYPES.index("bf16"), "fp8": KV_DTYPES.index("fp8")}
    df = df.with_columns(pl.col("kv_cache_dtype").replace_strict(codes, return_dtype=pl.Int64).alias("kv"))
    # `step` counts the tokens before the new one; the kernel reads step + 1.
    return df.group_by(pl.col("num_heads").alias("heads"), pl.col("num_key_value_heads").alias("kv_heads"),
                       "head_dim", "kv", pl.col("window_size").alias("window"), pl.col("batch_size").alias("b"),
                       (pl.col("step") + 1).alias("s")).agg((pl.col("latency").min() * 1e-3).alias("seconds"))


def generation_grids(df: pl.DataFrame, b_axis: list[int] | None = None,
                     s_axis: list[int] | None = None) -> dict[str, np.ndarray]:
    """Per head shape, KV precision and window, log-seconds on the (b, s) grid. Lengths not measured for a batch (the
    largest b x s, beyond the GPU's memory) extend the row's last segment (bandwidth-bound: linear in s); a batch
    not measured at all scales the one below it. Glitches are dropped and the grid made non-decreasing."""
    b_axis = b_axis or sorted(df["b"].unique().to_list())
    s_axis = s_axis or sorted(df["s"].unique().to_list())
    configs = sorted(df.select("heads", "kv_heads", "head_dim", "kv", "window").unique().rows())
    ci = {c: i for i, c in enumerate(configs)}
    bi, si = {v: i for i, v in enumerate(b_axis)}, {v: i for i, v in enumerate(s_axis)}
    grids = np.full((len(configs), len(b_axis), len(s_axis)), np.nan)
    for h, kv, d, code, w, b, s, sec in df.select("heads", "kv_heads", "head_dim", "kv", "window", "b", "s",
                                                  "seconds").iter_rows():
        if b in bi and s in si:
            grids[ci[(h, kv, d, code, w)], bi[b], si[s]] = sec
    xs = np.array(s_axis, float)
    for g in grids:
        for i, row in enumerate(g):
            ok = np.flatnonzero(~np.isnan(row))
            if len(ok) == 0:
                below = [k for k in range(i) if not np.isnan(g[k]).all()]
                if below:
                    g[i] = g[below[-1]] * (b_axis[i] / b_axis[below[-1]])
                continue
            inside = np.interp(xs, xs[ok], row[ok])
            if len(ok) >= 2:
                j0, j1 = ok[-2], ok[-1]
                slope = max(0.0, (row[j1] - row[j0]) / (xs[j1] - xs[j0]))
                after = xs > xs[j1]
                inside[after] = row[j1] + slope * (xs[after] - xs[j1])
            g[i] = inside
    grids = np.exp(_monotone(_drop_spikes(np.log(grids), (1, 2)), (1, 2)))
    return {"gen_configs": np.array(configs, float), "gen_b": np.array(b_axis, float),
            "gen_s": np.array(s_axis, float), "gen_log_s": np.log(grids)}


def validate_generation_attention(df: pl.DataFrame, gpu: str) -> HeldOut:
    """Every other interior KV length and batch size held apart, predicted from the rest of each shape's grid."""
    from sim.cost.kernels.decode_attention import KV_DTYPES, DecodeAttentionTable

    b_all, s_all = sorted(df["b"].unique().to_list()), sorted(df["s"].unique().to_list())
    held_b, held_s = set(b_all[1:-1:2]), set(s_all[1:-1:2])
    b_fit, s_fit = [v for v in b_all if v not in held_b], [v for v in s_all if v not in held_s]
    g = generation_grids(df.filter(pl.col("b").is_in(b_fit) & pl.col("s").is_in(s_fit)), b_fit, s_fit)
    table = DecodeAttentionTable(g["gen_configs"], g["gen_b"], g["gen_s"], g["gen_log_s"], "validation")
    test = df.filter(pl.col("b").is_in(list(held_b)) | pl.col("s").is_in(list(held_s)))
    err = np.array([abs(table.time(h, kv, d, KV_DTYPES[code], b, b * s, w) / sec - 1)
                    for h, kv, d, code, w, b, s, sec in
                    test.select("heads", "kv_heads", "head_dim", "kv", "window", "b", "s", "seconds").iter_rows()])
    return HeldOut(gpu, "decode attention", len(err), float(np.median(err)), float(np.percentile(err, 90)))


# ---- fused MoE (vLLM's fused_experts and its quantized variants), per model shape ---------------------------------
def read_moe(data_root: Path, gpu: str, version: str) -> pl.DataFrame:
    """Measured fused-MoE layers under balanced routing: kind (MOE_KINDS code), hidden, inter, topk, experts, tp, ep,
    n (tokens entering the layer on the GPU) and seconds (the fastest kernel measured for the point)."""
    from sim.cost.kernels.moe import MOE_KINDS

    path = data_root / "aiconfigurator_kernels" / gpu / "moe" / "vllm" / version / "moe_perf.parquet"
    df = pl.read_parquet(path).filter((pl.col("distribution") == "balanced")
                                      & pl.col("moe_dtype").is_in(list(MOE_KINDS)))
    df = df.with_columns(pl.col("moe_dtype").replace_strict({k: i for i, k in enumerate(MOE_KINDS)},
                                                            return_dtype=pl.Int64).alias("kind"))
    return df.group_by("kind", pl.col("hidden_size").alias("hidden"), pl.col("inter_size").alias("inter"), "topk",
                       pl.col("num_experts").alias("experts"), pl.col("moe_tp_size").alias("tp"),
                       pl.col("moe_ep_size").alias("ep"), pl.col("num_tokens").alias("n")).agg(
        (pl.col("latency").min() * 1e-3).alias("seconds")).sort("kind", "hidden", "inter", "topk", "experts", "tp",
                                                                "ep", "n")


_MOE_KEY = ("kind", "hidden", "inter", "topk", "experts", "tp", "ep")


def _moe_curve(n: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Log-seconds made non-decreasing in the token count, isolated glitches dropped first."""
    log_s = np.log(seconds)[:, None, None]
    return _monotone(_drop_spikes(log_s, (0,)), (0,))[:, 0, 0]


def _busy_knot(n: np.ndarray, log_s: np.ndarray, experts: int, topk: int) -> tuple[np.ndarray, np.ndarray]:
    """Add the point where every expert becomes busy (n = experts / topk under even routing) when it was not
    measured. Below it each more token hits new experts and reads their weights, so the time grows along the line
    through the two measured points below; above it the experts only get fuller and the time flattens. Its time is
    that line's, capped by the next measured point so the curve stays non-decreasing."""
    knot = experts / topk
    if knot <= n[0] or knot >= n[-1] or np.any(np.isclose(n, knot)):
        return n, log_s
    i = int(np.searchsorted(n, knot))
    s = np.exp(log_s)
    lo = i - 2 if i >= 2 else i - 1
    hi = i - 1 if i >= 2 else i
    t = s[hi] + (s[hi] - s[lo]) / (n[hi] - n[lo]) * (knot - n[hi])
    return np.insert(n, i, knot), np.insert(log_s, i, np.log(min(max(t, s[i - 1]), s[i])))


def moe_curves(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """One curve per measured configuration: keys [K, 7], offsets [K + 1] into the token counts and log-seconds."""
    keys, offsets, ns, logs = [], [0], [], []
    for key, g in df.group_by(*_MOE_KEY, maintain_order=True):
        if g.height < 2:
            continue
        n = g["n"].to_numpy().astype(float)
        n, log_s = _busy_knot(n, _moe_curve(n, g["seconds"].to_numpy()), experts=key[4], topk=key[3])
        keys.append(key)
        ns.append(n)
        logs.append(log_s)
        offsets.append(offsets[-1] + len(n))
    return {"moe_keys": np.array(keys, float), "moe_offsets": np.array(offsets, np.int64),
            "moe_n": np.concatenate(ns), "moe_log_s": np.concatenate(logs)}


def validate_moe(df: pl.DataFrame, gpu: str) -> HeldOut:
    """Every other interior token count of each configuration held apart, predicted from the rest of its curve
    (built as the shipped curves are, the busy-experts point added where the remaining counts lack it)."""
    from sim.cost.kernels.curve import LinearCurve

    errors = []
    for key, g in df.group_by(*_MOE_KEY):
        if g.height < 4:
            continue
        n, seconds = g["n"].to_numpy().astype(float), g["seconds"].to_numpy()
        idx = np.arange(len(n))
        held = (idx % 2 == 1) & (idx < len(n) - 1)
        curve = LinearCurve(*_busy_knot(n[~held], _moe_curve(n[~held], seconds[~held]), experts=key[4], topk=key[3]))
        errors += [abs(curve.time(x) / s - 1) for x, s in zip(n[held], seconds[held])]
    err = np.array(errors)
    return HeldOut(gpu, "fused MoE", len(err), float(np.median(err)), float(np.percentile(err, 90)))


def build(data_root: Path, gpu: str, version: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    axes = None
    for precision in PRECISIONS:
        df = read_gemm(data_root, gpu, version, precision)
        if axes is None:
            axes = (_m_axis(df["m"].unique().to_list()), sorted(df["n"].unique().to_list()),
                    sorted(df["k"].unique().to_list()))
            arrays.update(gemm_m=np.array(axes[0], float), gemm_n=np.array(axes[1], float),
                          gemm_k=np.array(axes[2], float))
        table = gemm_grid(df, *axes, source="")
        arrays[f"gemm_{precision}_log_s"] = table.log_s.astype(np.float16)
    arrays.update(allreduce_curves(read_allreduce(data_root, gpu, version)))
    for op, prefix in NCCL_OPS.items():
        arrays.update(nccl_curves(read_nccl(data_root, gpu, op), prefix))
    grids = attention_grids(read_context_attention(data_root, gpu, version))
    grids["attn_log_s"] = grids["attn_log_s"].astype(np.float16)
    arrays.update(grids)
    for w, df in read_window_attention(data_root, gpu, version).items():
        grids = attention_grids(df)
        grids["attn_log_s"] = grids["attn_log_s"].astype(np.float16)
        arrays.update({key.replace("attn_", f"attnw{w}_"): value for key, value in grids.items()})
    gen = generation_grids(read_generation_attention(data_root, gpu, version))
    gen["gen_log_s"] = gen["gen_log_s"].astype(np.float16)
    arrays.update(gen)
    arrays.update(moe_curves(read_moe(data_root, gpu, version)))
    arrays["source"] = np.array(f"aiconfigurator {gpu}, vLLM {version}")
    return arrays


def main(argv: list[str]) -> None:
    data_root = Path(argv[0]) if argv else Path("../shared/data/calibration")
    out = Path(__file__).resolve().parents[2] / "hardware" / "calibration" / "kernels"
    out.mkdir(parents=True, exist_ok=True)
    for gpu, version in GPUS.items():
        path = out / f"{gpu}.npz"
        np.savez_compressed(path, **build(data_root, gpu, version))
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(sys.argv[1:])
