"""The validation report: every figure an error on measurements held apart from what it was built or fitted on.

    python benchmarks/validate.py [--data ../shared/data] [--update-docs]

Prints one markdown table (operator, dataset, split, points, median and p90 relative error); --update-docs writes
it into docs/validation.md between its markers. Operators: each measured kernel table rebuilt without the held-apart
points and scored on them (sim/cost/kernel_tables.py). End to end: Splitwise's prompt and per-token times, three
each TP degree predicted by four engine constants fitted on the other degrees' rows (sim/report/end_to_end.py);
and measured vLLM V1 serving runs (benchmarks/data/), simulated with the vllm-v1 preset, nothing fitted
(sim/report/serving_runs.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.cost import kernel_tables as kt  # noqa: E402
from sim.report.end_to_end import TP_DEGREES, validate_splitwise  # noqa: E402
from sim.report.serving_runs import validate_serving_runs  # noqa: E402

BEGIN, END = "<!-- validate.py:begin -->", "<!-- validate.py:end -->"
GPU_NAMES = {"h100_sxm": "H100 SXM", "h200_sxm": "H200 SXM", "b200_sxm": "B200"}


def operator_rows(data: Path) -> list[tuple[str, str, str, int, float, float]]:
    root = data / "calibration"
    rows = []
    for gpu, version in kt.GPUS.items():
        source = f"aiconfigurator {GPU_NAMES[gpu]}, vLLM {version}"
        checks = [(f"GEMM {p.upper()}", "every 3rd n and k, every other m held apart",
                   lambda p=p: kt.validate_gemm(kt.read_gemm(root, gpu, version, p), gpu, p)) for p in kt.PRECISIONS]
        checks += [
            ("all-reduce", "every other message size held apart",
             lambda: kt.validate_allreduce(kt.read_allreduce(root, gpu, version), gpu)),
            ("prefill attention", "every other length and batch held apart",
             lambda: kt.validate_attention(kt.read_context_attention(root, gpu, version), gpu)),
            ("prefill attention, sliding windows", "every other length and batch held apart",
             lambda: kt.validate_window_attention(kt.read_window_attention(root, gpu, version), gpu)),
            ("decode attention", "every other length and batch held apart",
             lambda: kt.validate_generation_attention(kt.read_generation_attention(root, gpu, version), gpu)),
            ("fused MoE", "every other token count held apart",
             lambda: kt.validate_moe(kt.read_moe(root, gpu, version), gpu)),
        ]
        for name, split, run in checks:
            r = run()
            rows.append((name, source, split, r.points, r.median, r.p90))
        for op, label in (("alltoall", "all-to-all"), ("all_gather", "all-gather"), ("reduce_scatter", "reduce-scatter")):
            df = kt.read_nccl(root, gpu, op)
            r = kt.validate_nccl(df, gpu, label)
            rows.append((label, f"aiconfigurator {GPU_NAMES[gpu]}, NCCL {df['nccl'][0]}",
                         "every other message size held apart", r.points, r.median, r.p90))
    return rows


def end_to_end_rows(data: Path) -> tuple[list[tuple[str, str, str, int, float, float]], str]:
    result = validate_splitwise(data / "calibration" / "splitwise_perf_model" / "perf_model.csv")
    rows = []
    dataset = "Splitwise, Llama-2-70B and BLOOM-176B, A100 and H100"
    for metric, label in (("prompt", "prompt time"), ("token", "per-token time")):
        n, median, p90 = result.summary(metric)
        rows.append((f"end to end: {label}", dataset, "leave one TP degree out (every row)", n, median, p90))
        for tp in TP_DEGREES:
            others = " and ".join(f"TP{t}" for t in TP_DEGREES if t != tp)
            n, median, p90 = result.summary(metric, tp)
            rows.append((f"end to end: {label}", dataset, f"TP{tp} rows, fit on {others}", n, median, p90))
    note = "Engine constants per held-out TP degree (CPU per step + per TP worker per step, per layer launched, " \
           "per sequence): " + "; ".join(
               f"TP{tp} out: {f.step_overhead_s * 1e3:.2f} + {f.worker_overhead_s * 1e3:.2f} ms, "
               f"{f.eager_layer_s * 1e6:.0f} us, {f.seq_overhead_s * 1e3:.3f} ms" for tp, f in result.fits.items()) + "."
    return rows, note


def power_rows(data: Path) -> list[tuple[str, str, str, int, float, float]]:
    """The GPU power model against Splitwise's measured A100 power, each (prompt size, batch) group predicted by a
    fit without it; a power cap's slowdowns against the capped H100 rows."""
    import numpy as np

    from sim.energy import calibration as cal

    shapes = cal.read_shapes(data / "calibration")
    usable = [s for s in shapes if cal.usable(s)]
    avg, peak, _ = cal.leave_one_group_out(usable)
    dataset = "Splitwise, A100, Llama-2-70B TP2/4/8 and BLOOM-176B TP8"
    split = "each (prompt, batch) group held apart from the fit"
    rows = [("GPU power: average per request", dataset, split, len(avg), float(np.median(avg)),
             float(np.percentile(avg, 90))),
            ("GPU power: peak", dataset, split, len(peak), float(np.median(peak)), float(np.percentile(peak, 90)))]
    pairs = cal.cap_pairs(shapes)
    coef = cal.fit(usable)
    pp, mp, pt, mt = cal.cap_slowdowns(coef, cal.fit_cap_exponent(coef, pairs), pairs)
    capped = "Splitwise, H100 capped vs uncapped (cap assumed at 70% of TDP)"
    for label, split, pred, meas in (
            ("power cap: prompt-step slowdown", "in sample: its one exponent is fitted on these rows", pp, mp),
            ("power cap: token-step slowdown", "not fitted: follows from the steps' compute share", pt, mt)):
        err = np.abs(pred / meas - 1)
        rows.append((label, capped, split, len(err), float(np.median(err)), float(np.percentile(err, 90))))
    return rows


SERVING_SETS = {  # set -> (dataset, split)
    "a100-bursts": ("vLLM 0.10.1.1, Qwen2-7B and Qwen2.5-32B, one A100 80GB (dennislee22/vLLM-benchmarking)",
                    "never fitted; bursts of 1-200 prompts, 1,024 in and out"),
    "qwen3-8b-h100-closed": ("vLLM 0.11.0, Qwen3-8B, one H100 SXM (GPUStack performance lab)",
                             "never fitted; closed loops of 1-8, ShareGPT's mean lengths"),
    "gpt-oss-h100-closed": ("vLLM 0.10.2, gpt-oss-120b, H100 SXM TP1 and TP2 (GPUStack performance lab)",
                            "never fitted; closed loop of 4, ShareGPT's mean lengths"),
    "qwen3-14b-h100-bursts": ("vLLM 0.11.0, Qwen3-14B, one H100 SXM (GPUStack performance lab)",
                              "never fitted; bursts of 100-1,000 prompts, 128-32,000 in"),
    "qwen3-235b-h100-bursts": ("vLLM 0.11.0, Qwen3-235B-A22B, 8 H100 SXM TP8 (BF16) and 4 TP4 (FP8) (GPUStack)",
                               "never fitted; bursts of 100-984 prompts, 128-32,000 in"),
    "deepseek-r1-h200-closed": ("vLLM 0.11.0, DeepSeek-R1-0528 (FP8), 8 H200 TP8 (GPUStack performance lab)",
                                "never fitted; closed loop of 4, ShareGPT's mean lengths"),
    "deepseek-r1-h200-bursts": ("vLLM 0.11.0, DeepSeek-R1-0528 (FP8), 8 H200 TP8 (GPUStack performance lab)",
                                "never fitted; bursts of 100-1,000 prompts, 128-32,000 in"),
    "gpt-oss-h100-bursts": ("vLLM 0.10.2, gpt-oss-120b, H100 SXM TP1 and TP2 (GPUStack performance lab)",
                            "never fitted; bursts of 100-1,000 prompts, 128-32,000 in"),
}


def serving_rows() -> list[tuple[str, str, str, int, float, float]]:
    result = validate_serving_runs(ROOT / "benchmarks" / "data" / "vllm_v1_runs.csv")
    rows = []
    for subset, (dataset, split) in SERVING_SETS.items():
        for metric, label in (("ttft", "mean TTFT"), ("tpot", "mean TPOT"), ("duration", "duration")):
            rows.append((f"end to end, vLLM V1: {label}", dataset, split, *result.summary(metric, subset)))
    return rows


def table(rows: list[tuple[str, str, str, int, float, float]]) -> str:
    lines = ["| operator | dataset | split | points | median error | p90 error |", "|---|---|---|---:|---:|---:|"]
    lines += [f"| {o} | {d} | {s} | {n:,} | {m:.1%} | {p:.1%} |" for o, d, s, n, m, p in rows]
    return "\n".join(lines)


def operator_table(data: Path):  # noqa: ANN201  (a polars DataFrame)
    """The per-operator rows as a table, shipped as benchmarks/data/operator_errors.csv for notebook 06."""
    import polars as pl

    return pl.DataFrame(operator_rows(data), schema=["operator", "dataset", "split", "points", "median_error",
                                                     "p90_error"], orient="row")


def report(data: Path) -> str:
    """The whole summary: the table of every row, then the note on the engine constants."""
    e2e, note = end_to_end_rows(data)
    return table(operator_rows(data) + e2e + serving_rows() + power_rows(data)) + "\n\n" + note


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--update-docs", action="store_true", help="write the table into docs/validation.md")
    args = parser.parse_args(argv)
    if not (args.data / "calibration").is_dir():
        print(f"error: {args.data / 'calibration'}: not found; pass --data DIR (the shared data folder)",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    text = report(args.data)
    print(text)
    print(f"\n({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if args.update_docs:
        doc = ROOT / "docs" / "validation.md"
        current = doc.read_text()
        if BEGIN not in current or END not in current:
            print(f"error: {doc}: markers {BEGIN} / {END} not found", file=sys.stderr)
            return 2
        head, rest = current.split(BEGIN, 1)
        doc.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
        operator_table(args.data).write_csv(ROOT / "benchmarks" / "data" / "operator_errors.csv")
        print(f"wrote {doc} and benchmarks/data/operator_errors.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
