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
