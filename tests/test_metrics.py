"""Per-request metrics against their definitions."""

import numpy as np
import pytest

from helpers import synthetic
from sim import EngineConfig
from sim.metrics.records import emission_times, request_table
from sim.runner import build, execute


def test_itl_table_matches_each_requests_emission_times_through_preemptions():
    scenario = synthetic("llama-3.1-8b", rate=20.0, n=300, seed=7, replicas=2, input_len="fixed:1000",
                         output_len="lognormal:300:0.5",
                         engine=EngineConfig(num_gpu_blocks_override=500, max_num_seqs=64))
    sim = build(scenario)
    execute(sim)
    ends = [e for r in sim.fleet.replicas for e in r.decode_step_ends()]  # indexed by Request.lane
    df, pooled = request_table(sim.requests, ends)
    assert sum(r.preemptions for r in sim.requests) > 0
    # Tokens are conserved: one inter-token gap per output token after the first.
    assert pooled.size == sum(r.output - 1 for r in sim.requests)
    for r, p50, mx, ttft, e2e in zip(sim.requests, df["itl_p50_s"], df["itl_max_s"], df["ttft_s"], df["e2e_s"]):
        t = emission_times(r, ends[r.lane])
        assert len(t) == r.output
        assert np.all(np.diff(t) > 0)
        assert t[0] - r.arrival == pytest.approx(ttft, rel=1e-12)
        assert t[-1] - r.arrival == pytest.approx(e2e, rel=1e-12)
        if r.output > 1:
            assert p50 == pytest.approx(np.median(np.diff(t)), abs=1e-9)  # ordered at nanosecond resolution
            assert mx == pytest.approx(np.diff(t).max(), abs=1e-9)


def test_tpot_is_the_mean_inter_token_latency():
    result = __import__("sim").run(synthetic(rate=3.0, n=200, seed=1))
    df = result.requests.filter(result.requests["output_tokens"] > 1)
    # TPOT x (n - 1) = E2E - TTFT by definition (vLLM's benchmark)
    lhs = df["tpot_s"] * (df["output_tokens"] - 1)
    np.testing.assert_allclose(lhs.to_numpy(), (df["e2e_s"] - df["ttft_s"]).to_numpy(), rtol=1e-9)
    assert result.summary["itl_mean_s"] == pytest.approx(
        (df["e2e_s"] - df["ttft_s"]).sum() / (df["output_tokens"] - 1).sum(), rel=1e-9)


def _preempting_run(replicas: int = 2, attn_dp: int = 1):
    scenario = synthetic("llama-3.1-8b", rate=20.0, n=300, seed=7, replicas=replicas, input_len="fixed:1000",
                         output_len="lognormal:300:0.5", attn_dp=attn_dp,
                         engine=EngineConfig(num_gpu_blocks_override=500, max_num_seqs=64))
    sim = build(scenario)
    execute(sim)
    assert sum(r.preemptions for r in sim.requests) > 0
    return sim, [e for r in sim.fleet.replicas for e in r.decode_step_ends()]


@pytest.mark.parametrize("replicas,attn_dp", [(2, 1), (1, 2)])
def test_pooled_itl_is_every_gap_weighted_not_listed(replicas, attn_dp):
    """The weighted step gaps hold exactly the multiset of every token's gap (materialised the old way), so the
    summary's ITL percentiles and maximum are the same to the last bit, and the mean within rounding."""
    from sim.metrics.itl import Runs, pooled
    from sim.metrics.summary import PERCENTILES

    sim, ends = _preempting_run(replicas, attn_dp)
    runs = Runs.of(sim.requests, ends)
    every, _ = runs.gaps()
    weighted = pooled(runs)
    assert weighted.size == every.size == sum(r.output - 1 for r in sim.requests if r.output > 1)
    # the point: entries linear in steps and runs, not in tokens
    assert len(weighted.values) <= len(runs.ends) + 2 * len(runs.req) < weighted.size
    np.testing.assert_array_equal(weighted.expand(), np.sort(every))
    assert weighted.percentiles(PERCENTILES) == [float(v) for v in np.percentile(every, PERCENTILES)]
    assert weighted.max() == every.max()
    assert weighted.mean() == pytest.approx(every.mean(), rel=1e-12)


def test_weighted_percentiles_are_numpys_to_the_last_bit():
    from sim.metrics.itl import Weighted

    rng = np.random.default_rng(3)
    for trial in range(300):
        k = int(rng.integers(1, 40))
        values = np.sort(rng.choice(rng.random(k) * 10.0 ** rng.integers(-4, 2), k))  # ties included
        counts = rng.integers(1, 6, k)
        w = Weighted(values, counts)
        qs = [0, 1, 25, 50, 90, 99, 99.9, 100, float(rng.random() * 100)]
        assert w.percentiles(qs) == [float(v) for v in np.percentile(w.expand(), qs)], trial


def test_per_request_itl_statistics_do_not_depend_on_the_chunking(monkeypatch):
    from sim.metrics import itl

    sim, ends = _preempting_run()
    runs = itl.Runs.of(sim.requests, ends)
    whole = itl.per_request(runs, len(sim.requests))
    monkeypatch.setattr(itl, "CHUNK_GAPS", 50)  # hundreds of chunks, cut only between requests
    chunked = itl.per_request(runs, len(sim.requests))
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
