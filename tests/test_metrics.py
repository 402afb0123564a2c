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
    assert len(pooled) == sum(r.output - 1 for r in sim.requests)
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
