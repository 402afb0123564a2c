"""Fit the GPU power model (sim/energy/power.py) to Splitwise's measured power, and score it on groups held apart.

Data: shared/data/calibration/splitwise_perf_model/perf_model.csv (Mutinifni/splitwise-sim @ 8f99e7dc, MIT; Patel et
al., Splitwise, ISCA'24): per request shape (model, TP, prompt size, batch, output tokens) the measured prompt time,
per-token time and end-to-end time, with the peak and average power of the GPUs as fractions of TDP. Only the A100
rows carry power (the H100 rows hold zeros). Excluded: Llama-2-70B with 8,192-token prompts, whose average power
(0.17-0.18 of TDP at every TP) is below that of every shorter prompt of the same TP while their peak is at TDP: a
recording fault, not a regime (BLOOM's 8,192-token prompt averages 0.54).

Each shape is one prompt step of batch x prompt tokens followed by output-1 token steps (the measured times), its
average power the time-weighted mean of the two phases' draws. The coefficients (floor, compute, memory) are a
least-squares fit of that mean to the measured average power; the report fits them without one (prompt size, batch)
group at a time and scores the held-out group.

The cap: Splitwise's power-capped H100 rows take 1.30x as long as the uncapped H100's for every prompt and 1.00x for
every token step, at a cap the file does not state; we take it as 70% of TDP (490 W), the cap Splitwise's HHcap
design puts on token machines (an assumption). A cap C lowers the clocks at which compute-bound work runs until a
fully busy GPU draws C: that work runs ((1 - floor) / (C/TDP - floor)) ** exponent times slower, and a step's
compute-bound share U_c / (U_c + U_m) of its time stretches by that factor (memory-bound work keeps its pace). The
exponent makes the median capped H100 prompt step as much slower as measured.

    python -m sim.energy.calibration [DATA_DIR]    # refit and rewrite hardware/calibration/power.toml
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.core.paths import data_dir
from sim.energy.work import StepWork, prefill_pairs
from sim.hardware.catalog import load_gpu
from sim.model import load_model

CSV = Path("splitwise_perf_model") / "perf_model.csv"
MODELS = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
GPUS = {"a100-80gb": "a100", "h100-80gb": "h100", "h100-80gb-pcap": "h100"}
ASSUMED_CAP_FRACTION = 0.7


@dataclass(frozen=True)
class Shape:
    model: str
    hardware: str
    tp: int
    prompt: int
    batch: int
    output: int
    prompt_s: float
    token_s: float
    e2e_s: float
    average: float  # fraction of TDP; NaN where not measured
    peak: float

    @property
    def group(self) -> tuple[int, int]:
        return self.prompt, self.batch


def read_shapes(data: Path) -> list[Shape]:
    """Every shape of the file, repeats averaged."""
    import polars as pl

    df = pl.read_csv(data / CSV)
    keys = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    df = df.group_by(keys).agg(pl.col("prompt_time", "token_time", "e2e_time", "average_power", "peak_power").mean())
    out = []
    for r in df.sort(keys).iter_rows(named=True):
        measured = r["average_power"] > 0
        out.append(Shape(r["model"], r["hardware"], r["tensor_parallel"], r["prompt_size"], r["batch_size"],
                         r["token_size"], r["prompt_time"] / 1e3, r["token_time"] / 1e3, r["e2e_time"] / 1e3,
                         r["average_power"] if measured else float("nan"),
                         r["peak_power"] if measured else float("nan")))
    return out


def usable(shape: Shape) -> bool:
    return (shape.hardware == "a100-80gb" and shape.average == shape.average
            and not (shape.model == "llama2-70b" and shape.prompt == 8192))


def _utilisation(shape: Shape) -> tuple[float, float, float, float]:
    """(U_c, U_m) of the prompt step and of the mean token step, per GPU, at the measured times."""
    model, gpu = load_model(MODELS[shape.model]), load_gpu(GPUS[shape.hardware])
    work = StepWork.of(model)
    peak, bw = gpu.peak_flops("bf16") * shape.tp, gpu.hbm_tbps * 1e12 * shape.tp
    b, p, n = shape.batch, shape.prompt, shape.output
    tokens = np.array([b * p, b], dtype=float)
    # Token step i (1..n-1) attends to p + i cached tokens: the mean over the steps.
    kv = b * (p + n / 2.0)
    pairs = np.array([b * prefill_pairs(p, 0), kv])
    touched = np.array([b * p, kv])
    flops = work.flops(tokens, pairs)
    nbytes = work.bytes(np.ones(2), tokens, touched)
    times = np.array([shape.prompt_s, shape.token_s])
    u_c, u_m = flops / (peak * times), nbytes / (bw * times)
    return float(u_c[0]), float(u_m[0]), float(u_c[1]), float(u_m[1])


def _prompt_share(shape: Shape) -> float:
    return min(shape.prompt_s / shape.e2e_s, 1.0)


def design(shapes: list[Shape]) -> np.ndarray:
    """Rows [1, time-weighted U_c, time-weighted U_m] of each shape (average power = row . coefficients)."""
    rows = []
    for s in shapes:
        ucp, ump, uct, umt = _utilisation(s)
        w = _prompt_share(s)
        rows.append([1.0, w * ucp + (1 - w) * uct, w * ump + (1 - w) * umt])
    return np.array(rows)


def fit(shapes: list[Shape]) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design(shapes), np.array([s.average for s in shapes]), rcond=None)
    return coef


def predict_average(coef: np.ndarray, shapes: list[Shape]) -> np.ndarray:
    """Each phase's draw capped at TDP, time-weighted."""
    out = []
    for s in shapes:
        ucp, ump, uct, umt = _utilisation(s)
        w = _prompt_share(s)
        prompt = min(coef[0] + coef[1] * ucp + coef[2] * ump, 1.0)
        token = min(coef[0] + coef[1] * uct + coef[2] * umt, 1.0)
        out.append(w * prompt + (1 - w) * token)
    return np.array(out)


def predict_peak(coef: np.ndarray, shapes: list[Shape]) -> np.ndarray:
    out = []
    for s in shapes:
        ucp, ump, uct, umt = _utilisation(s)
        out.append(min(max(coef[0] + coef[1] * ucp + coef[2] * ump, coef[0] + coef[1] * uct + coef[2] * umt), 1.0))
    return np.array(out)


def leave_one_group_out(shapes: list[Shape]) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
    """Relative errors of average and peak power of each shape, predicted by a fit without its (prompt, batch)
    group; and the shapes in that order."""
    avg_err, peak_err, order = [], [], []
    for group in sorted({s.group for s in shapes}):
        train = [s for s in shapes if s.group != group]
        test = [s for s in shapes if s.group == group]
        coef = fit(train)
        avg_err += list(np.abs(predict_average(coef, test) / [s.average for s in test] - 1))
        peak_err += list(np.abs(predict_peak(coef, test) / [s.peak for s in test] - 1))
        order += test
    return np.array(avg_err), np.array(peak_err), order


def cap_pairs(shapes: list[Shape]) -> list[tuple[Shape, Shape]]:
    """(uncapped H100, capped H100) shapes of the same request."""
    by_key = {(s.model, s.tp, s.prompt, s.batch, s.output, s.hardware): s for s in shapes}
    out = []
    for s in shapes:
        if s.hardware == "h100-80gb":
            capped = by_key.get((s.model, s.tp, s.prompt, s.batch, s.output, "h100-80gb-pcap"))
            if capped is not None:
                out.append((s, capped))
    return out


def compute_share(u_c: float, u_m: float) -> float:
    """The compute-bound share of a step: U_c / (U_c + U_m)."""
    return u_c / (u_c + u_m) if u_c + u_m > 0 else 0.0


def cap_factor(coef: np.ndarray, exponent: float, cap_fraction: float) -> float:
    """How many times slower fully compute-bound work runs under a cap (fraction of TDP): the clocks at which a
    fully busy GPU draws the cap instead of its TDP."""
    return ((1.0 - coef[0]) / (cap_fraction - coef[0])) ** exponent


def cap_slowdowns(coef: np.ndarray, exponent: float, pairs: list[tuple[Shape, Shape]]) -> tuple[np.ndarray, ...]:
    """(predicted prompt, measured prompt, predicted token, measured token) slowdowns under the assumed cap."""
    factor = cap_factor(coef, exponent, ASSUMED_CAP_FRACTION)
    pp, mp, pt, mt = [], [], [], []
    for plain, capped in pairs:
        ucp, ump, uct, umt = _utilisation(plain)
        pp.append(1.0 + (factor - 1.0) * compute_share(ucp, ump))
        mp.append(capped.prompt_s / plain.prompt_s)
        pt.append(1.0 + (factor - 1.0) * compute_share(uct, umt))
        mt.append(capped.token_s / plain.token_s)
    return np.array(pp), np.array(mp), np.array(pt), np.array(mt)


def fit_cap_exponent(coef: np.ndarray, pairs: list[tuple[Shape, Shape]]) -> float:
    """The exponent that makes the median capped prompt step as much slower as measured."""
    factors = []
    for plain, capped in pairs:
        ucp, ump, _, _ = _utilisation(plain)
        factors.append(1.0 + (capped.prompt_s / plain.prompt_s - 1.0) / compute_share(ucp, ump))
    ratio = (1.0 - coef[0]) / (ASSUMED_CAP_FRACTION - coef[0])
    return float(np.log(np.median(factors)) / np.log(ratio))


def main(argv: list[str]) -> None:
    data = Path(argv[0]) if argv else Path("../shared/data/calibration")
    shapes = read_shapes(data)
    train = [s for s in shapes if usable(s)]
    coef = fit(train)
    exponent = fit_cap_exponent(coef, cap_pairs(shapes))
    path = data_dir("hardware") / "calibration" / "power.toml"
    path.write_text(
        "# Generated by `python -m sim.energy.calibration` -- do not edit by hand; rerun it instead.\n"
        "# Fitted to Splitwise's measured A100 power (Mutinifni/splitwise-sim @ 8f99e7dc, data/perf_model.csv, MIT;\n"
        "# Patel et al., Splitwise, ISCA'24), copied in shared/data/calibration/splitwise_perf_model. Fractions of TDP.\n"
        f'source = "splitwise-sim perf_model.csv: {len(train)} A100 shapes with power (Llama-2-70B TP2/4/8, '
        f'BLOOM-176B TP8)"\n'
        f"floor = {coef[0]:.6g}\ncompute = {coef[1]:.6g}\nmemory = {coef[2]:.6g}\n"
        f"# Slowdown exponent of a power cap, from the capped H100 rows at an assumed cap of "
        f"{ASSUMED_CAP_FRACTION:.0%} of TDP.\ncap_exponent = {exponent:.6g}\n")
    print(f"wrote {path}: floor {coef[0]:.4f}, compute {coef[1]:.4f}, memory {coef[2]:.4f}, "
          f"cap exponent {exponent:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
