"""The shipped cost-model calibration against the real measurements it was fitted to."""

import numpy as np
import pytest

from sim.cost import calibration as cal
from sim.hardware import load_gpu
from sim.hardware.calibration import load_calibration


def _errors(samples, gpu_key, gpu_name):
    gpu = load_gpu(gpu_name)
    p = load_calibration(gpu_key)
    out = {}
    for s in samples:
        if s.op in cal.LINEAR_OPS:
            pred = cal.gemm_time(s.flops, s.bytes, s.tokens, gpu.peak_flops("bf16"), gpu.hbm_bytes_per_s, p.gemm)
        else:
            pred = cal.elementwise_time(s.bytes, gpu.hbm_bytes_per_s, p.elementwise)
        out.setdefault((s.model, s.op, s.tp), []).append(abs(pred / s.measured_s - 1))
    return {k: float(np.median(v)) for k, v in out.items()}


@pytest.mark.parametrize("gpu_key,gpu_name", [("h100", "h100-sxm"), ("a100", "a100-80gb-sxm")])
def test_operator_fit_error(shared_data, gpu_key, gpu_name, capsys):
    samples = cal.read_mlp_profiles(shared_data / "calibration/vidur_profiling/compute" / gpu_key)
    errors = _errors(samples, gpu_key, gpu_name)
    with capsys.disabled():
        print(f"\nper-operator median |error| of the shipped {gpu_key} fit (Vidur measurements):")
        for model in sorted({k[0] for k in errors}):
            cells = []
            for op in cal.LINEAR_OPS + cal.ELEMENTWISE_OPS:
                vals = [errors[k] for k in errors if k[0] == model and k[1] == op]
                if vals:
                    cells.append(f"{op}={np.mean(vals):.1%}")
            print(f"  {model:28s} " + " ".join(cells))
    if gpu_key == "h100":
        for tp in (1, 2, 4, 8):
            for op in cal.LINEAR_OPS:
                err = errors[("Llama-2-70b-hf", op, tp)]
                assert err < 0.15, f"Llama-2-70B {op} TP{tp}: median error {err:.1%}"
    linear = [v for k, v in errors.items() if k[1] in cal.LINEAR_OPS]
    assert np.median(linear) < 0.15


def test_collective_fit_error(shared_data, capsys):
    for gpu_key in ("h100", "a100"):
        p = load_calibration(gpu_key)
        data = cal.read_collective(shared_data / f"calibration/vidur_profiling/network/{gpu_key}_dgx/all_reduce.csv",
                                   "all_reduce")
        for (n, nodes), (sizes, times) in data.items():
            entry = p.allreduce[f"{n}x{nodes}"]
            pred = cal.ring_allreduce_time(sizes, n, entry["alpha_s"], entry["busbw_gbps"])
            err = np.abs(pred / times - 1)
            small, large = sizes < 1 << 20, sizes >= 1 << 20
            with capsys.disabled():
                print(f"  {gpu_key} all-reduce {n} GPUs on {nodes} node(s): median |error| "
                      f"<1MiB {np.median(err[small]):.1%}, >=1MiB {np.median(err[large]):.1%}")
            if nodes == 1:  # cross-node rings are issue 3's hierarchical model; printed here, not held
                assert np.median(err[large]) < 0.15


def test_refit_reproduces_the_shipped_card(shared_data):
    """The shipped coefficients are what `python -m sim.cost.calibration` produces from the data."""
    gpu = load_gpu("h100-sxm")
    samples = cal.read_mlp_profiles(shared_data / "calibration/vidur_profiling/compute/h100")
    fit = cal.fit_gemm(samples, gpu.peak_flops("bf16"), gpu.hbm_bytes_per_s)
    shipped = load_calibration("h100").gemm
    for k, v in fit.items():
        assert shipped[k] == pytest.approx(v, rel=1e-3)


def test_nccl_collective_fit_error_per_collective_and_size(shared_data, capsys):
    """Every NCCL collective of the APEX+ profiles against the shipped fit (H100) and a refit (H200, V100)."""
    from sim.hardware import Cluster, load_fabric, load_node
    from sim.hardware.collective import COLLECTIVE_FACTORS, collective_model

    root = shared_data / "calibration/apex_nccl"
    calib = load_calibration("h100")
    gpu = load_gpu("h100-sxm")
    cluster = Cluster(gpu, load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8)
    with capsys.disabled():
        print("\nNCCL fit: median |error| by collective, GPUs and message size (APEX+ profiles)")
        for folder in ("H100-SXM-80GB", "H200-SXM-141GB", "V100-PCIE-16GB"):
            refit = cal.fit_apex_nccl(root / folder)
            for coll in COLLECTIVE_FACTORS:
                data = cal.read_apex_nccl(root / folder, coll)
                for (n, nodes), (sizes, times) in data.items():
                    if folder.startswith("H100"):
                        model = collective_model(coll, cluster, calib, gpu.scale_up_gbps, n, nodes)
                        pred = np.array([model(s) for s in sizes])
                    else:
                        alpha, bw = refit[coll][(n, nodes)]  # fitted here, the way the shipped card is
                        pred = alpha + COLLECTIVE_FACTORS[coll](n) * sizes / (bw * 1e9)
                    err = np.abs(pred / times - 1)
                    bands = {"<64KiB": sizes < 1 << 16, "64KiB-8MiB": (sizes >= 1 << 16) & (sizes < 1 << 23),
                             ">=8MiB": sizes >= 1 << 23}
                    cells = " ".join(f"{k} {np.median(err[m]):5.1%}" for k, m in bands.items() if m.any())
                    print(f"  {folder:16s} {coll:15s} {n:2d} GPUs on {nodes} node(s): {cells}")
                    if folder.startswith("H100") and bands[">=8MiB"].any():
                        assert np.median(err[bands[">=8MiB"]]) < 0.25, (coll, n)  # one alpha-beta per size range


# ---- measured kernel tables (aiconfigurator, inside vLLM 0.24.0) -------------------------------------------------
def test_gemm_tables_predict_shapes_held_apart(shared_data, capsys):
    """Build each GPU's GEMM grid without every third n, every third k and every other m from 32 tokens up, and
    predict the measured rows it did not see (15,309 per GPU and precision). The figures go in docs/validation.md.
    B200's FP8 table is the exception: 16% of its shapes run >30% faster with more tokens than with fewer (the
    CUTLASS kernel's tile choice), which a step cost that never falls with more work cannot follow."""
    from sim.cost import kernel_tables as kt

    root = shared_data / "calibration"
    with capsys.disabled():
        print("\nGEMM tables, held-apart rows: |predicted / measured - 1|")
        for gpu, version in kt.GPUS.items():
            for precision in kt.PRECISIONS:
                r = kt.validate_gemm(kt.read_gemm(root, gpu, version, precision), gpu, precision)
                print(f"  {gpu:9s} {precision:5s} {r.points:6,} rows  median {r.median:5.1%}  p90 {r.p90:5.1%}")
                assert r.median <= 0.05
                if (gpu, precision) != ("b200_sxm", "fp8"):
                    assert r.p90 <= 0.15


def test_shipped_gemm_tables_are_the_measurements_reduced(shared_data):
    """The shipped grids are exactly what the reduction makes of the measurements (regenerated, not hand-edited)."""
    import numpy as np

    from sim.cost import kernel_tables as kt
    from sim.core.paths import data_dir

    for gpu, version in kt.GPUS.items():
        built = kt.build(shared_data / "calibration", gpu, version)
        with np.load(data_dir("hardware") / "calibration" / "kernels" / f"{gpu}.npz") as shipped:
            for key, value in built.items():
                # Floats within 1e-12, not bit for bit: numpy 2.4's geomspace moved three grid points by one ulp.
                same = shipped[key].shape == value.shape and (
                    np.allclose(shipped[key], value, rtol=1e-12, atol=0) if value.dtype.kind == "f"
                    else np.array_equal(shipped[key], value))
                assert same, (gpu, key)


def test_measured_gemms_cost_the_gpus_that_have_them():
    from sim.cost import IterationCost
    from sim.hardware import Cluster, load_fabric, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    model = load_model("llama-3.1-70b")
    for name, measured in (("h100", True), ("h200", True), ("b200", True), ("a100", False), ("mi300x", False)):
        gpu = load_gpu(name)
        cost = IterationCost(model, Cluster(gpu, load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8), Plan(tp=8))
        assert cost.kernel_sources()["gemm"].startswith("measured") == measured, name
    # The measured H100 BF16 GEMM of 4,096 tokens through an 8,192 x 8,192 weight: 0.698 ms (80% of peak).
    h100 = IterationCost(model, Cluster(load_gpu("h100"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8),
                         Plan(tp=8))
    assert h100._gemm(4096, 8192, 8192, "bf16") == pytest.approx(0.698e-3, rel=0.01)


def test_tensor_parallel_allreduce_is_vllms_where_measured():
    """Inside an NVLink node with tables, TP all-reduces cost what vLLM's custom kernel takes: ~5 us inside a CUDA
    graph (steps up to 512 tokens), ~20 us eagerly, NCCL above 8 MiB; elsewhere the NCCL fit of the family."""
    from sim.cost import IterationCost
    from sim.hardware import Cluster, load_fabric, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    model = load_model("llama-3.1-70b")
    cost = IterationCost(model, Cluster(load_gpu("h100"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8),
                         Plan(tp=8))
    small = 2 * 8192 * 2.0  # two tokens of hidden size 8,192 in BF16
    assert 4e-6 < cost.allreduce.time(small) < 7e-6
    assert 18e-6 < cost.allreduce.time(small, eager=True) < 26e-6
    assert cost.kernel_sources()["allreduce"].startswith("measured")
    # A 1,000-token step's all-reduces run eagerly, a 500-token one's in a graph: the bigger step pays the launches.
    per_token_small = cost._rank_linear(500, 500) / 500
    assert cost._rank_linear(1000, 1000) > cost._rank_linear(500, 500)
    assert per_token_small > 0
    pcie = IterationCost(model, Cluster(load_gpu("h100"), load_node("pcie-8gpu"), load_fabric("ib-ndr-400"), 8),
                         Plan(tp=8))
    a100 = IterationCost(model, Cluster(load_gpu("a100"), load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 8),
                         Plan(tp=8))
    for other in (pcie, a100):
        assert other.kernel_sources()["allreduce"].startswith("NCCL fit")


def test_expert_parallel_alltoall_is_nccls_where_measured():
    """EP all-to-alls inside an NVLink node with tables cost NCCL's measured all-to-all (aiconfigurator h100_sxm,
    NCCL 2.29.2: 8 GPUs, a 1 MiB buffer each, 15.6 us); across nodes, and on GPUs without tables, the model."""
    from sim.cost import IterationCost
    from sim.hardware import Cluster, load_fabric, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    model = load_model("qwen3-235b-a22b")
    node, fabric = load_node("hgx-8gpu"), load_fabric("ib-ndr-400")
    cost = IterationCost(model, Cluster(load_gpu("h100"), node, fabric, 8), Plan(tp=1, attn_dp=8, ep=8))
    assert cost.alltoall(2 ** 20) == pytest.approx(15.6e-6, rel=0.01)
    assert cost.kernel_sources()["alltoall"] == "measured NCCL (aiconfigurator h100_sxm, NCCL 2.29.2)"
    sizes = [2.0 ** e for e in range(8, 31)]
    assert all(cost.alltoall(b) <= cost.alltoall(2 * b) for b in sizes)
    across = IterationCost(model, Cluster(load_gpu("h100"), node, fabric, 16), Plan(tp=1, attn_dp=16, ep=16))
    a100 = IterationCost(model, Cluster(load_gpu("a100"), node, fabric, 8), Plan(tp=1, attn_dp=8, ep=8))
    assert across.kernel_sources()["alltoall"].startswith("NCCL fit")
    assert a100.kernel_sources()["alltoall"].startswith("NCCL fit")
    assert IterationCost(model, Cluster(load_gpu("h100"), node, fabric, 8), Plan(tp=8)).kernel_sources()[
        "alltoall"] == "none"


def test_decode_attention_follows_the_measured_kernel_and_physics():
    """A decode step's attention on H100 is the measured kernel's time (Llama-3.1-8B's 32/8/128 shape is measured
    as is), never falls as KV grows or sequences join, and an FP8 KV cache reads half the bytes."""
    import dataclasses

    from sim.cost import IterationCost
    from sim.cost.kernels.decode_attention import load_decode_attention_table
    from sim.hardware import Cluster, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    table = load_decode_attention_table("h100_sxm")
    model = load_model("llama-3.1-8b")
    cost = IterationCost(model, Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 1), Plan())
    # 64 sequences of 4,096 tokens: measured 0.3536 ms per layer (aiconfigurator h100_sxm, vLLM 0.24.0, FA3).
    per_layer = cost._decode_kv(64, 64 * 4096) / model.num_layers
    assert per_layer == pytest.approx(table.time(32, 8, 128, "bf16", 64, 64 * 4096), rel=1e-12)
    assert per_layer == pytest.approx(0.3536e-3, rel=0.03)
    prev = 0.0
    for kv in range(64, 64 * 70000, 64 * 997):
        t = cost._decode_kv(64, kv)
        assert t >= prev
        prev = t
    # One more sequence of the same length is more work (at a fixed total, more, shorter sequences can be faster:
    # the kernel spreads them over more SMs, as measured).
    for s in (100, 4096, 50000):
        assert all(cost._decode_kv(n + 1, (n + 1) * s) >= cost._decode_kv(n, n * s) * (1 - 1e-12)
                   for n in range(1, 3000, 7))
    fp8 = IterationCost(dataclasses.replace(model, kv_dtype="fp8"),
                        Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 1), Plan())
    long = 64 * 32768
    assert 0.45 < fp8._decode_kv(64, long) / cost._decode_kv(64, long) < 0.65
    assert "decode: measured decode-kernel table" in cost.kernel_sources()["attention"]


def test_routed_experts_follow_the_measured_fused_moe_layer():
    """gpt-oss-120b's MXFP4 experts on one H100: 64 tokens (256 copies over 128 experts) take the measured 0.689 ms
    per layer (aiconfigurator h100_sxm, vLLM 0.24.0, Triton MXFP4 kernel); more copies never take less time; FP8
    block experts of Qwen3-30B-A3B beat its BF16 ones as measured (0.335 against 0.529 ms at 1,024 tokens)."""
    import dataclasses

    from sim.cost import IterationCost
    from sim.hardware import Cluster, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    cluster = Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 1)
    oss = IterationCost(load_model("gpt-oss-120b"), cluster, Plan())
    assert oss.expert_time(64 * 4, 128) == pytest.approx(0.689e-3, rel=0.03)
    # Below the point where every expert is busy (32 tokens), even routing reads back the measured layer (8 tokens:
    # 32 copies on 32 experts, 0.201 ms), not a share of the all-busy time (0.25 x 0.687 = 0.172 ms).
    assert oss.expert_time(8 * 4, 32) == pytest.approx(0.2006e-3, rel=0.01)
    # The same 32 copies piled on 8 experts read a quarter of those weights but load each expert four times.
    piled = oss.expert_time(8 * 4, 8)
    assert oss.expert_time(2 * 4, 8) < piled < oss.expert_time(8 * 4, 32)
    times = [oss.expert_time(c, 128) for c in range(1, 40000, 97)]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(times, times[1:]))
    assert "w4a16_mxfp4 kernel" in oss.kernel_sources()["moe_experts"]
    qwen = load_model("qwen3-30b-a3b")
    bf16 = IterationCost(qwen, cluster, Plan())
    fp8 = IterationCost(dataclasses.replace(qwen, weight_dtype="fp8"), cluster, Plan())
    assert bf16.expert_time(1024 * 8, 128) == pytest.approx(0.529e-3, rel=0.03)
    assert fp8.expert_time(1024 * 8, 128) == pytest.approx(0.335e-3, rel=0.03)
    # A shape nobody measured keeps the roofline.
    odd = dataclasses.replace(qwen, moe=dataclasses.replace(qwen.moe, num_experts=96))
    assert IterationCost(odd, cluster, Plan()).kernel_sources()["moe_experts"].startswith("roofline")


def test_sliding_window_layers_use_the_measured_window_kernel():
    """gpt-oss keeps a 128-token window in half its layers. On H100 the measured windowed decode of 64 sequences of
    4,096 tokens takes 32.9 us per layer (aiconfigurator, vLLM 0.24.0, FA3), 60% more than the full kernel over 128
    tokens each (20.3 us): skipping the rest of the paged context is not free. A window nobody measured falls back
    to the full kernel over at most the window of each sequence."""
    import dataclasses

    from sim.cost import IterationCost
    from sim.hardware import Cluster, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    cluster = Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 1)
    oss = load_model("gpt-oss-120b")
    cost = IterationCost(oss, cluster, Plan())
    assert cost._window_curve(64).at(64 * 4096) == pytest.approx(32.9e-6, rel=0.03)
    windowed = cost._decode_kv(64, 64 * 4096)
    expected = (oss.full_attention_layers * cost._decode_curve(64).at(64 * 4096)
                + oss.sliding_window_layers * cost._window_curve(64).at(64 * 4096))
    assert windowed == pytest.approx(expected, rel=1e-12)
    # Past the window, more context costs the windowed layers (almost) nothing.
    assert cost._window_curve(64).at(64 * 65536) < 1.2 * cost._window_curve(64).at(64 * 4096)
    odd = IterationCost(dataclasses.replace(oss, sliding_window=300), cluster, Plan())
    assert odd._window_curve(64) is None
    capped = odd._decode_kv(64, 64 * 4096) - oss.full_attention_layers * odd._decode_curve(64).at(64 * 4096)
    assert capped == pytest.approx(oss.sliding_window_layers * odd._decode_curve(64).at(64 * 300), rel=1e-12)


# Held-apart checks of the measured tables other than GEMM: (label, reader, validator, p90 bound). All-reduce:
# vLLM's custom kernel (graph and eager) and NCCL on 2/4/8 GPUs, every other message size held apart; all-to-all,
# all-gather and reduce-scatter: NCCL's on 2/4/8 GPUs, likewise. Prefill attention (BF16 KV, no window): one (batch, length) grid per head shape.
# Decode attention (vLLM's default kernel per GPU, BF16 and FP8 KV, full and sliding windows): one grid per head
# shape, precision and window, interpolated linearly. Fused MoE (balanced routing): one curve per model shape, precision and (TP, EP) split over tokens. The
# grids drop every other interior point of each axis and are scored on them.
HELD_APART = {
    "all-reduce curves": ("read_allreduce", "validate_allreduce", 0.15),
    # NCCL's small all-to-alls jitter by several microseconds between neighbouring sizes (H200: 16.5% p90), and so
    # do its all-gathers (H200: 20.5% p90).
    "all-to-all curves": ("read_alltoall", "validate_alltoall", 0.17),
    "all-gather curves": ("read_allgather", "validate_allgather", 0.21),
    "reduce-scatter curves": ("read_reducescatter", "validate_reducescatter", 0.15),
    "prefill attention grids": ("read_context_attention", "validate_attention", 0.15),
    "sliding-window prefill attention grids": ("read_window_attention", "validate_window_attention", 0.15),
    "decode attention grids": ("read_generation_attention", "validate_generation_attention", 0.15),
    "fused MoE curves": ("read_moe", "validate_moe", 0.15),
}


@pytest.mark.parametrize("label", sorted(HELD_APART))
def test_measured_tables_predict_points_held_apart(label, shared_data, capsys):
    from sim.cost import kernel_tables as kt

    read, validate, p90 = HELD_APART[label]
    with capsys.disabled():
        print(f"\n{label}, held-apart points:")
        for gpu, version in kt.GPUS.items():
            r = getattr(kt, validate)(getattr(kt, read)(shared_data / "calibration", gpu, version), gpu)
            print(f"  {gpu:9s} {r.points:6,} points  median {r.median:5.1%}  p90 {r.p90:5.1%}")
            assert r.median <= 0.05 and r.p90 <= p90


def test_data_parallel_attention_gathers_and_scatters_as_nccl_measures(shared_data):
    """Attention DP without EP feeds an FFN split over all GPUs: the step pays NCCL's all-gather of the gathered
    tokens plus its reduce-scatter, read back from aiconfigurator's h100_sxm NCCL 2.29.2 tables at a measured size;
    on GPUs without tables, one all-reduce of the same bytes (the family's fit)."""
    import polars as pl

    from sim.cost import IterationCost
    from sim.cost import kernel_tables as kt
    from sim.hardware import Cluster, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    model = load_model("qwen3-30b-a3b")
    cost = IterationCost(model, Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 8), Plan(tp=1, attn_dp=8))
    root = shared_data / "calibration"
    nbytes = 2 ** 21
    measured = sum(kt.read_nccl(root, "h100_sxm", op).filter((pl.col("gpus") == 8) & (pl.col("bytes") == nbytes))
                   ["seconds"].item() for op in ("all_gather", "reduce_scatter"))
    assert cost.ffn_comm.time(nbytes) == pytest.approx(measured, rel=1e-3)
    assert cost.ffn_comm.time(nbytes, eager=True) == cost.ffn_comm.time(nbytes)
    sizes = [2.0 ** e for e in range(8, 31)]
    assert all(cost.ffn_comm.time(b) <= cost.ffn_comm.time(2 * b) for b in sizes)
    assert cost.kernel_sources()["gather_scatter"] == (
        "measured NCCL all-gather + reduce-scatter (aiconfigurator h100_sxm, NCCL 2.29.2)")
    # Plain TP all-reduces its FFN output (no gather); a GPU without tables prices the gather as one all-reduce.
    assert IterationCost(model, Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 8),
                         Plan(tp=8)).kernel_sources()["gather_scatter"] == "none"
    a100 = IterationCost(model, Cluster(load_gpu("a100"), load_node("hgx-8gpu"), None, 8), Plan(tp=1, attn_dp=8))
    assert a100.kernel_sources()["gather_scatter"] == "as one all-reduce: NCCL fit, a100 family"


def test_sliding_window_prefill_reads_the_windowed_grid(shared_data):
    """gpt-oss-120b's 128-token window layers (TP2 on H100): a fresh prompt is priced by FlashAttention's measured
    windowed kernel (aiconfigurator h100_sxm, window_size 128), not by the full-attention grid at as many (query,
    key) pairs, which under-prices long prompts (the kernel still walks the tiles the window cuts through)."""
    import dataclasses

    import polars as pl

    from sim.cost import IterationCost
    from sim.cost import kernel_tables as kt
    from sim.hardware import Cluster, load_node
    from sim.model import load_model
    from sim.parallel import Plan

    model = load_model("gpt-oss-120b")
    cost = IterationCost(model, Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 2), Plan(tp=2))
    measured = kt.read_context_attention(shared_data / "calibration", "h100_sxm", "0.24.0", window=128).filter(
        (pl.col("heads") == 32) & (pl.col("kv_heads") == 4) & (pl.col("head_dim") == 64) & (pl.col("b") == 1)
        & (pl.col("s") == 8192))["seconds"].item()
    pairs = 8192 * 128
    windowed = cost._table_prefill([pairs], cost.attn_window_table, 128)
    assert windowed == pytest.approx(measured, rel=0.05)
    assert windowed > 2 * cost._table_prefill([pairs])  # the pair-equivalent full-attention reading
    # A window not measured (300 tokens) keeps the pair reading, and the run says so.
    odd = IterationCost(dataclasses.replace(model, sliding_window=300),
                        Cluster(load_gpu("h100"), load_node("dgx-h100"), None, 2), Plan(tp=2))
    assert odd.attn_window_table is None
    assert "300-token window read at its (query, key) pairs" in odd.kernel_sources()["attention"]
    assert "128-token window measured" in cost.kernel_sources()["attention"]


def test_gemm_lookup_is_trilinear_in_log_log_and_scales_with_work_beyond_the_grid():
    """The table's lookup (interpolated over the weight shape once, then along tokens) against scipy's trilinear
    interpolation of the same log grid; exact at measured points; past the largest m, n or k, time grows with the
    work added."""
    import math

    import numpy as np
    from scipy.interpolate import RegularGridInterpolator

    from sim.cost.kernels.gemm import load_gemm_tables

    table = load_gemm_tables("h100_sxm")["bf16"]
    axes = [np.log(table.m), np.log(table.n), np.log(table.k)]
    reference = RegularGridInterpolator(axes, table.log_s)
    rng = np.random.default_rng(7)
    for _ in range(500):
        m, n, k = (float(np.exp(rng.uniform(a[0], a[-1]))) for a in axes)
        want = math.exp(float(reference([math.log(m), math.log(n), math.log(k)])[0]))
        assert table.time(m, k, n) == pytest.approx(want, rel=1e-12)
    i, j, l = 3, 2, 1
    assert table.time(table.m[i], table.k[l], table.n[j]) == pytest.approx(math.exp(table.log_s[i, j, l]), rel=1e-12)
    m, n, k = table.m[-1], table.n[-1], table.k[-1]
    edge = table.time(m, k, n)
    assert table.time(2 * m, 3 * k, 5 * n) == pytest.approx(30 * edge, rel=1e-12)
    for grow in (1.01, 1.5, 4.0):  # more work never takes less time
        assert table.time(grow * m / 2, k / 2, n / 2) >= table.time(m / 2, k / 2, n / 2)
