"""Energy and money: the power model against Splitwise's measured power (groups held apart), analytic cases with
known answers, a power cap's physics, and the figures every run and search reports."""

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import sim
from helpers import synthetic
from sim import EngineConfig
from sim.cli import app
from sim.energy.account import PoolEnergy, energy_summary
from sim.energy.power import PowerModel
from sim.energy.work import StepWork
from sim.hardware.catalog import load_gpu
from sim.model import load_model

runner = CliRunner()
SMALL = {"workload": {"num_requests": 150}}


def test_power_fit_predicts_average_power_of_groups_held_apart(shared_data):
    """Each (prompt size, batch) group's average power predicted by a fit without it: median within 10%."""
    from sim.energy import calibration as cal

    shapes = [s for s in cal.read_shapes(shared_data / "calibration") if cal.usable(s)]
    assert len(shapes) == 41 and len({s.group for s in shapes}) == 11
    avg_err, _, _ = cal.leave_one_group_out(shapes)
    assert np.median(avg_err) <= 0.10, np.median(avg_err)
    assert np.percentile(avg_err, 90) <= 0.20


def test_shipped_power_coefficients_are_the_fit(shared_data):
    """hardware/calibration/power.toml is what `python -m sim.energy.calibration` makes of the data (not edited)."""
    from sim.energy import calibration as cal
    from sim.energy.power import shipped_coefficients

    shapes = cal.read_shapes(shared_data / "calibration")
    coef = cal.fit([s for s in shapes if cal.usable(s)])
    shipped = shipped_coefficients()
    np.testing.assert_allclose([shipped["floor"], shipped["compute"], shipped["memory"]], coef, rtol=1e-5)
    np.testing.assert_allclose(shipped["cap_exponent"], cal.fit_cap_exponent(coef, cal.cap_pairs(shapes)), rtol=1e-5)
    # The capped H100: prompt steps 1.3x slower, token steps unchanged, as measured.
    pp, mp, pt, mt = cal.cap_slowdowns(coef, shipped["cap_exponent"], cal.cap_pairs(shapes))
    assert np.median(np.abs(pp / mp - 1)) < 0.06 and np.median(np.abs(pt / mt - 1)) < 0.01


def _idle_pool(replicas: int, gpus: int, overhead: float = 0.0) -> PoolEnergy:
    class Idle:
        def __init__(self, i):
            from array import array

            self.index, self.work = i, array("d")

    gpu = load_gpu("h100")
    power = PowerModel.for_gpu(gpu.power_w, gpu.idle_watts, gpu.peak_flops("bf16"), gpu.hbm_bytes_per_s)
    return PoolEnergy([Idle(i) for i in range(replicas)], power, StepWork.of(load_model("llama-3.1-8b")), gpus,
                      3.0, replicas * gpus / 8, overhead)


def test_an_idle_cluster_draws_idle_power_times_gpus_times_pue():
    pool = _idle_pool(replicas=4, gpus=2)
    out, _ = energy_summary([pool], 3600.0, 1000.0, 10, pue=1.4, electricity_usd_per_kwh=0.2)
    idle = load_gpu("h100").idle_watts
    assert out["energy_kwh"] == pytest.approx(idle * 8 * 1.4 / 1000.0, rel=1e-12)  # one hour
    assert out["avg_power_per_gpu_w"] == pytest.approx(idle, rel=1e-12)
    assert out["usd_total"] == pytest.approx(8 * 3.0 + out["energy_kwh"] * 0.2, rel=1e-12)
    # A node's own draw, shared by its GPUs: 8 GPUs of 8-GPU nodes carry one node's.
    with_nodes, _ = energy_summary([_idle_pool(4, 2, overhead=2800.0)], 3600.0, 1000.0, 10, pue=1.0,
                                   electricity_usd_per_kwh=0.2)
    assert with_nodes["energy_kwh"] == pytest.approx((idle * 8 + 2800.0) / 1000.0, rel=1e-12)


def test_doubling_the_prices_doubles_the_cost_per_token():
    base = sim.run(synthetic(n=150))
    runs = [sim.run(synthetic(n=150).with_overrides(**{"energy.gpu_usd_per_hour": p, "energy.electricity_usd_per_kwh": e}))
            for p, e in ((2.0, 0.1), (4.0, 0.2))]
    a, b = (r.summary for r in runs)
    assert b["usd_per_mtok"] == pytest.approx(2 * a["usd_per_mtok"], rel=1e-12)
    assert b["cluster_usd_per_hour"] == pytest.approx(2 * a["cluster_usd_per_hour"], rel=1e-12)
    assert a["energy_kwh"] == base.summary["energy_kwh"]  # prices never change what is simulated
    # GPU hours alone: $/Mtok = GPUs x $/h x hours / tokens
    free_power = sim.run(synthetic(n=150).with_overrides(**{"energy.electricity_usd_per_kwh": 0.0})).summary
    tokens = float(base.requests.filter(pl.col("status") == "finished")["output_tokens"].sum())
    gpu_usd = load_gpu("h100").price_per_hour_usd * free_power["duration_s"] / 3600.0
    assert free_power["usd_per_mtok"] == pytest.approx(gpu_usd / tokens * 1e6, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(flops=st.floats(0, 1e16), nbytes=st.floats(0, 1e12), cap=st.floats(230, 690), more=st.floats(1.0, 10.0))
def test_a_power_cap_never_speeds_a_step_up_and_slows_compute_more(flops, nbytes, cap, more):
    gpu = load_gpu("h100")
    m = PowerModel.for_gpu(gpu.power_w, gpu.idle_watts, gpu.peak_flops("bf16"), gpu.hbm_bytes_per_s, cap_w=cap)
    s = m.slowdown(flops, nbytes, 1.0)
    assert 1.0 <= s <= m.cap_factor
    # More compute for the same bytes (more compute-bound) never slows less; a tighter cap never slows less.
    assert m.slowdown(flops * more, nbytes, 1.0) >= s - 1e-12
    tighter = PowerModel.for_gpu(gpu.power_w, gpu.idle_watts, gpu.peak_flops("bf16"), gpu.hbm_bytes_per_s,
                                 cap_w=cap * 0.99 if cap * 0.99 > m.floor_w else cap)
    assert tighter.slowdown(flops, nbytes, 1.0) >= s - 1e-12


def test_a_power_cap_slows_prefill_more_than_decode_in_the_cost_model():
    from sim.runner import power_model
    from sim.cost import IterationCost
    from sim.hardware import Cluster, load_fabric, load_node
    from sim.parallel import Plan

    model, gpu = load_model("llama-3.1-70b"), load_gpu("h100")
    cluster = Cluster(gpu, load_node("hgx-8gpu"), load_fabric("ib-ndr-400"), 4)
    plain = IterationCost(model, cluster, Plan(tp=4))
    capped = IterationCost(model, cluster, Plan(tp=4), power_cap=power_model(gpu, model, 450.0))
    prefill = capped.step_time([(4096, 0)], 0, 0) / plain.step_time([(4096, 0)], 0, 0)
    decode = capped.decode_time(64, 64 * 2000) / plain.decode_time(64, 64 * 2000)
    assert prefill > decode >= 1.0 and prefill > 1.2
    ends = capped.decode_run_ends(64, 64 * 2000, 40, 0.0)
    step = [capped.decode_time(64, 64 * 2000 + 64 * i) for i in range(40)]
    assert list(ends) == list(np.cumsum(step))  # fast-forward prices capped steps as stepping does


@pytest.mark.parametrize("cap", [None, 450.0])
def test_fast_forward_reports_the_energy_stepping_does(cap):
    runs = {}
    for ff in (True, False):
        sc = synthetic("llama-2-70b", "a100", tp=2, rate=2.5, n=200, seed=3,
                       engine=EngineConfig(fast_forward=ff, max_num_batched_tokens=512))
        runs[ff] = sim.run(sc.with_overrides(**{"energy.power_cap_w": cap * 400 / 700 if cap else None}))
    a, b = runs[True].summary, runs[False].summary
    for key in ("energy_kwh", "joules_per_output_token", "usd_per_mtok", "avg_power_per_gpu_w"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key


def test_a_run_reports_energy_within_physical_bounds_and_writes_power_over_time(tmp_path):
    res = runner.invoke(app, ["run", "--num-requests", "200", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    gpu = load_gpu("h100")
    assert gpu.idle_watts < s["avg_power_per_gpu_w"] < gpu.power_w
    assert s["peak_power_per_gpu_w"] <= gpu.power_w
    # Energy = average GPU power x GPUs x span + the nodes' own draw (PUE 1).
    span = s["duration_s"]
    assert s["energy_kwh"] * 3.6e6 == pytest.approx((s["avg_power_per_gpu_w"] * 8 + 2800.0) * span, rel=1e-9)
    assert s["joules_per_output_token"] == pytest.approx(s["energy_kwh"] * 3.6e6 / (s["output_tokens_per_s"] * span),
                                                         rel=1e-9)
    kv = pl.read_parquet(tmp_path / "o" / "kv_timeline.parquet")
    assert "power_w_per_gpu" in kv.columns and kv.height > 0
    w = kv["power_w_per_gpu"]
    floor = PowerModel.for_gpu(gpu.power_w, gpu.idle_watts, 1, 1).floor_w
    assert float(w.min()) >= floor - 1e-9 and float(w.max()) <= gpu.power_w
    # The power cap: never above it; slower.
    capped = runner.invoke(app, ["run", "--num-requests", "200", "--power-cap", "400", "--json"])
    c = json.loads(capped.stdout)
    assert c["peak_power_per_gpu_w"] <= 400.0 + 1e-9 and c["power_cap_w"] == 400.0
    assert c["ttft_p50_s"] > s["ttft_p50_s"]


def test_disaggregated_and_colocated_plans_of_the_same_gpus_differ_in_joules_per_token():
    wl = {"workload": {"num_requests": 200, "trace": "azure-conv", "duration_s": None}}
    colocated = sim.run(model="llama-3.1-8b", gpu="h100", num_gpus=2, **wl).summary
    split = sim.run(model="llama-3.1-8b", gpu="h100", disagg={"prefill_replicas": 1, "decode_replicas": 1}, **wl)
    s = split.summary
    assert s["joules_per_output_token"] != pytest.approx(colocated["joules_per_output_token"], rel=0.01)
    # The prefill pool's GPUs run compute-bound steps: they draw more than the decode pool's while busy.
    reps = split.kv_timeline.group_by("replica").agg(pl.col("power_w_per_gpu").mean()).sort("replica")
    assert reps["power_w_per_gpu"][0] > reps["power_w_per_gpu"][1]


def test_agent_runs_report_energy_and_dollars_per_job():
    r = sim.run(agents={"agents": 2, "programs": 6, "turns": 3})
    s = r.summary
    assert s["usd_per_job"] == pytest.approx(s["usd_total"] / 6, rel=1e-12)
    assert s["joules_per_job"] == pytest.approx(s["energy_kwh"] * 3.6e6 / 6, rel=1e-12)


def test_search_ranks_by_energy_and_cost_among_plans_meeting_the_slos(tmp_path):
    from sim.planner import search

    for objective, col in (("energy", "joules_per_output_token"), ("cost", "cost_per_mtok_usd")):
        r = search(model="llama-3.1-8b", gpu="h100", num_gpus=2, objective=objective, **SMALL)
        ok = r.table.filter(pl.col("meets_slo") == True)  # noqa: E712
        assert ok.height >= 2 and col in r.table.columns
        values = ok[col].to_list()
        assert values == sorted(values), objective
        assert r.winner[col] == values[0]


@settings(max_examples=200, deadline=None)
@given(flops=st.floats(0, 1e15), nbytes=st.floats(0, 1e12), seconds=st.floats(1e-4, 10.0),
       more=st.floats(1.0, 100.0))
def test_more_work_in_a_step_never_draws_less_power_or_energy(flops, nbytes, seconds, more):
    gpu = load_gpu("h100")
    m = PowerModel.for_gpu(gpu.power_w, gpu.idle_watts, gpu.peak_flops("bf16"), gpu.hbm_bytes_per_s)
    w = float(m.watts(flops, nbytes, seconds))
    assert m.floor_w - 1e-9 <= w <= gpu.power_w
    assert float(m.watts(flops * more, nbytes, seconds)) >= w - 1e-9
    assert float(m.watts(flops, nbytes * more, seconds)) >= w - 1e-9
    # The same work spread over a longer step never costs more energy than the floor it adds.
    longer = seconds * more
    assert float(m.watts(flops, nbytes, longer)) * longer >= w * seconds - 1e-9


def test_the_replicas_work_record_has_the_fields_the_accounting_reads():
    from sim.energy.account import FIELDS
    from sim.serving.replica import WORK_FIELDS

    assert len(WORK_FIELDS) == FIELDS
    r = sim.run(synthetic(n=40))
    rep = r.kv_timeline.filter(pl.col("replica") == 0)
    assert rep.height > 0 and rep["power_w_per_gpu"].null_count() == 0
