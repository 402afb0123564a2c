"""Trace readers on the real files, arrival processes and length distributions."""

import numpy as np
import pytest

from sim.core.rng import stream
from sim.errors import FleetsimError
from sim.core.arrivals import arrival_times
from sim.core.lengths import sample
from sim.workload.build import build_requests
from sim.workload.spec import WorkloadSpec
from sim.workload.traces import load_trace, read_trace


def test_azure_readers_on_the_real_traces(shared_data):
    conv = read_trace(shared_data / "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv").table
    code = read_trace(shared_data / "traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv").table
    assert conv.height == 19366 and code.height == 8819
    assert conv["arrival_s"][0] == 0.0 and 3400 < conv["arrival_s"].max() < 3600  # one hour
    assert conv["input_tokens"].min() >= 1 and conv["output_tokens"].min() >= 1


def test_shipped_traces_equal_the_originals(shared_data):
    shipped, _ = load_trace("azure-conv")
    original = read_trace(shared_data / "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    assert shipped.equals(original.table)
    assert original.fmt == "azure" and original.notes == []


def test_mooncake_reader_keeps_prefix_hashes(shared_data):
    df = read_trace(shared_data / "traces/mooncake_fast25/conversation_trace.jsonl").table
    assert df.height == 12031
    lens = df["prefix_hashes"].list.len().to_numpy()
    # one hash per 512-token block of the prompt
    assert np.all(lens == np.ceil(df["input_tokens"].to_numpy() / 512))
    _, unit = load_trace(str(shared_data / "traces/mooncake_fast25/conversation_trace.jsonl"))
    assert unit == 512


@pytest.mark.parametrize("kind,cv", [("poisson", 1.0), ("gamma", 1.0), ("gamma", 3.0), ("gamma", 0.5)])
def test_arrival_processes_have_the_asked_rate_and_burstiness(kind, cv):
    t = arrival_times(kind, 4.0, 200_000, stream(0, "a"), cv)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.25, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_length_distributions():
    rng = stream(1, "l")
    assert set(sample("fixed:512", 10, rng, "f")) == {512}
    u = sample("uniform:100:200", 50_000, rng, "f")
    assert u.min() >= 100 and u.max() <= 200 and u.mean() == pytest.approx(150, rel=0.01)
    ln = sample("lognormal:1000:0.8", 50_000, rng, "f")
    assert np.median(ln) == pytest.approx(1000, rel=0.03)
    emp = sample("empirical", 1000, rng, "f", empirical=np.array([3, 7]))
    assert set(emp) == {3, 7}
    assert sample("lognormal:1000:2", 1000, rng, "f", cap=4096).max() <= 4096
    with pytest.raises(FleetsimError, match="takes 2 parameter"):
        sample("uniform:3", 1, rng, "workload.input_len")


def test_trace_rate_scaling_and_window():
    whole = float("inf")
    base, _ = build_requests(WorkloadSpec(trace="azure-conv", duration_s=whole), 0)
    fast, _ = build_requests(WorkloadSpec(trace="azure-conv", duration_s=whole, rate=10.0), 0)
    span = fast["arrival_s"].max()
    assert (fast.height - 1) / span == pytest.approx(10.0, rel=1e-9)
    assert fast["input_tokens"].equals(base["input_tokens"])
    window, _ = build_requests(WorkloadSpec(trace="azure-conv", duration_s=600), 0)
    assert window.height == 2867 and window["arrival_s"].max() < 600
    default, _ = build_requests(WorkloadSpec(trace="azure-conv"), 0)  # the shipped trace's documented 10 minutes
    assert default.equals(window)


@pytest.mark.parametrize("arrival", ["trace", "poisson", "gamma"])
@pytest.mark.parametrize("bound", [{"num_requests": 500}, {"duration_s": 120.0}, {"num_requests": 300, "duration_s": 120.0}])
def test_rate_r_offers_r_over_the_run(arrival, bound):
    """--rate 8 with a count or a window offered 6.82 req/s on the default trace (the trace was rescaled over its
    whole length, then cut); generated arrivals offered R only on average."""
    spec = WorkloadSpec(trace="azure-conv", arrival=arrival, rate=8.0, **bound)
    df, _ = build_requests(spec, 0)
    offered = (df.height - 1) / (df["arrival_s"].max() - df["arrival_s"].min())
    assert offered == pytest.approx(8.0, rel=1e-9)
    expected = min(bound.get("num_requests", 10**9), 960 if "duration_s" in bound else 10**9)
    assert df.height == expected and df["arrival_s"].max() < bound.get("duration_s", float("inf"))


def test_a_users_trace_replays_whole_and_a_shipped_one_keeps_its_window(tmp_path):
    import shutil

    from sim.workload.traces import resolve

    conv, _ = load_trace("azure-conv")
    path = tmp_path / "mine.csv"
    shutil.copy(resolve("azure-conv")[0], path)
    mine, _ = build_requests(WorkloadSpec(trace=str(path)), 0)
    assert mine.height == conv.height > 2867  # all of it, not the first 600 s


def test_generated_workload_with_trace_lengths_is_seeded():
    spec = WorkloadSpec(trace="azure-conv", arrival="gamma", cv=2.0, rate=3.0, num_requests=500)
    a, _ = build_requests(spec, 7)
    b, _ = build_requests(spec, 7)
    c, _ = build_requests(spec, 8)
    assert a.equals(b) and not a.equals(c)
    conv, _ = load_trace("azure-conv")
    assert set(a["input_tokens"].to_list()) <= set(conv["input_tokens"].to_list())


def _closed(n_in_flight, n=120, **kw):
    import sim

    work = {"workload.trace": None, "workload.arrival": "poisson", "workload.num_requests": n,
            "workload.duration_s": None, "workload.concurrency": n_in_flight,
            "workload.input_len": "lognormal:800:0.5", "workload.output_len": "lognormal:150:0.5", **kw}
    return sim.run(model="llama-3.1-8b", gpu="h100", num_gpus=1, **work)


def test_closed_loop_keeps_n_requests_in_flight_as_vllm_bench_serve():
    """--concurrency N: a request is sent as soon as one of the N in flight finishes, so N are in flight until the
    last ones drain; throughput x mean latency = N (Little's law) over that span."""
    import numpy as np

    for limit in (1, 4, 16):
        r = _closed(limit)
        df = r.requests.sort("arrival_s")
        starts, ends = df["arrival_s"].to_numpy(), df["finish_s"].to_numpy()
        # In flight when each request is sent: sent at or before it, not finished yet (it included).
        in_flight = ((starts[None, :] <= starts[:, None]) & (ends[None, :] > starts[:, None])).sum(axis=1)
        assert in_flight.max() == limit
        if limit == 1:
            np.testing.assert_allclose(starts[1:], ends[:-1])  # one at a time: each sent when the previous ends
        # Until the last request is sent the loop is full: the time requests spend in flight over that window is N.
        t0, t1 = starts.min(), starts.max()
        overlap = np.clip(np.minimum(ends, t1) - np.maximum(starts, t0), 0, None).sum()
        assert overlap / (t1 - t0) == pytest.approx(limit, rel=1e-6)
        assert r.summary["max_concurrency"] == limit


def test_closed_loop_with_a_rate_sends_no_request_before_its_arrival():
    slow = _closed(64, n=60, **{"workload.rate": 0.5})
    assert slow.summary["queue_delay_p90_s"] < 0.05  # never more than a handful in flight at 0.5 req/s
    assert slow.requests["arrival_s"].max() > 60  # paced by the rate, not sent at once


def test_bad_closed_loop_settings_are_one_line():
    import sim
    from sim.agents.spec import AgentSpec

    with pytest.raises(sim.FleetsimError, match="workload.concurrency: expected a positive integer"):
        _closed(0)
    with pytest.raises(sim.FleetsimError, match="concurrency without a rate: set num_requests"):
        sim.run(**{"workload.trace": None, "workload.arrival": "poisson", "workload.concurrency": 4,
                   "workload.duration_s": 60})
    with pytest.raises(sim.FleetsimError, match="agent jobs run their own closed loop"):
        sim.run(agents=AgentSpec(programs=2, agents=1), **{"workload.concurrency": 4})


def test_lengths_given_without_an_arrival_process_generate_the_workload():
    """`--concurrency 10 --input-len 1024 --output-len 1024` (vllm bench serve's random dataset) generates those
    requests; the default trace's lengths are not used in their place."""
    spec = WorkloadSpec(input_len="fixed:1024", output_len="fixed:1024", num_requests=10, duration_s=None,
                        concurrency=10)
    assert spec.arrival_kind == "poisson"
    table, _ = build_requests(spec, seed=0)
    assert table.height == 10
    assert set(table["input_tokens"]) == {1024} and set(table["output_tokens"]) == {1024}
    # Only the prompts given: the outputs still follow the trace's distribution.
    half = WorkloadSpec(input_len="fixed:512", num_requests=200, duration_s=None)
    out = build_requests(half, seed=0)[0]["output_tokens"]
    assert set(build_requests(half, seed=0)[0]["input_tokens"]) == {512} and out.n_unique() > 20
    assert WorkloadSpec().arrival_kind == "trace"  # nothing set: the default trace is replayed


def test_options_that_would_be_ignored_are_refused():
    with pytest.raises(FleetsimError, match="a replayed trace keeps its own lengths"):
        WorkloadSpec(arrival="trace", input_len="fixed:100")
    with pytest.raises(FleetsimError, match="burstiness of gamma arrivals; these arrivals are poisson"):
        WorkloadSpec(arrival="poisson", cv=3.0)
    with pytest.raises(FleetsimError, match="these arrivals are trace"):
        WorkloadSpec(cv=2.0)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(FleetsimError, match="workload.cv: expected a positive, finite"):
            WorkloadSpec(arrival="gamma", cv=bad)
