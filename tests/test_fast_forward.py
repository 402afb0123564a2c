"""Fast-forward (many decode steps per event) gives the same per-request results as stepping one at a time."""

import numpy as np
import pytest

import sim
from helpers import synthetic
from sim import EngineConfig, Scenario, WorkloadSpec

CASES = {
    "continuous": {},
    "unchunked": {"preset": "vllm-v0"},
    "v0-chunked": {"preset": "vllm-v0", "chunked_prefill": True},
    "static": {"policy": "static"},
    "memory-pressure": {"num_gpu_blocks_override": 400, "max_num_seqs": 64},
    "prefix-cache-pressure": {"num_gpu_blocks_override": 900, "block_size": 8},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_forward_equals_stepping(case):
    runs = {}
    for ff in (True, False):
        scenario = synthetic("llama-2-70b", "a100", tp=2, rate=2.5, n=250, seed=3,
                             engine=EngineConfig(fast_forward=ff, max_num_batched_tokens=512, **CASES[case]))
        runs[ff] = sim.run(scenario)
    a, b = (runs[ff].requests.sort("request_id") for ff in (True, False))
    for col in ("ttft_s", "tpot_s", "e2e_s", "itl_p50_s", "itl_max_s", "queue_delay_s"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=col)
    assert a["preemptions"].to_list() == b["preemptions"].to_list()
    assert runs[True].info["engine_events"] < runs[False].info["engine_events"]
    if case == "memory-pressure":
        assert runs[True].summary["preemptions"] > 0


@pytest.mark.parametrize("router,gpus", [("round-robin", 1), ("prefix-aware", 3)])
def test_fast_forward_equals_stepping_with_prefix_cache_under_pressure(router, gpus):
    """Mooncake requests share prefixes: hits, LRU evictions and preemptions all happen in this run."""
    runs = {}
    for ff in (True, False):
        scenario = Scenario(model="llama-3.1-8b", gpu="h100", num_gpus=gpus, router=router,
                            engine=EngineConfig(fast_forward=ff, num_gpu_blocks_override=4000, max_num_seqs=64,
                                                max_num_batched_tokens=2048),
                            workload=WorkloadSpec(trace="mooncake-conv", num_requests=250, duration_s=None,
                                                  rate=0.5 * gpus, max_tokens=60_000))
        runs[ff] = sim.run(scenario)
    a, b = (runs[ff].requests.sort("request_id") for ff in (True, False))
    for col in ("ttft_s", "e2e_s", "itl_max_s", "prefix_hit_tokens", "preemptions"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9, err_msg=col)
    s = runs[True].summary
    assert s["preemptions"] > 0 and s["prefix_hit_rate"] > 0


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(policy=st.sampled_from(["continuous", "static"]), chunked=st.booleans(), caching=st.booleans(),
       seqs=st.sampled_from([4, 32]), budget=st.sampled_from([64, 512]), blocks=st.sampled_from([None, 150, 600]),
       rate=st.floats(0.5, 30.0), n=st.integers(1, 80), seed=st.integers(0, 1000), replicas=st.integers(1, 2))
def test_fast_forward_equals_stepping_on_random_configurations(policy, chunked, caching, seqs, budget, blocks,
                                                               rate, n, seed, replicas):
    tables = []
    for ff in (True, False):
        eng = EngineConfig(preset="vllm-v1" if chunked else "vllm-v0", policy=policy, enable_prefix_caching=caching, max_num_seqs=seqs,
                           max_num_batched_tokens=budget, num_gpu_blocks_override=blocks, fast_forward=ff,
                           block_size=8)
        scenario = synthetic("llama-2-7b", "a100", rate=rate, n=n, seed=seed, replicas=replicas, engine=eng,
                             router="least-tokens", input_len="lognormal:200:1.0", output_len="lognormal:40:1.0",
                             max_tokens=1100)  # the smallest KV cache drawn holds 1,192 tokens
        tables.append(sim.run(scenario).requests.sort("request_id"))
    a, b = tables
    assert a["status"].to_list() == b["status"].to_list()
    assert a["preemptions"].to_list() == b["preemptions"].to_list()
    for col in ("ttft_s", "e2e_s", "itl_max_s"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=col)


@pytest.mark.parametrize("plan", [dict(tp=1, attn_dp=4, ep=4), dict(tp=2, pp=2), dict(tp=1, attn_dp=2, pp=2, ep=2)])
def test_fast_forward_equals_stepping_over_ranks_and_micro_batches(plan):
    """Several schedulers in lock-step (attention-DP ranks, pipeline micro-batches): runs of decode steps over all
    of them, and chained steps, give what stepping one iteration at a time gives."""
    runs = {}
    for ff in (True, False):
        scenario = Scenario(model="qwen3-30b-a3b", gpu="h100", num_gpus=4, moe_routing="zipf:1.0", **plan,
                            engine=EngineConfig(fast_forward=ff, num_gpu_blocks_override=700, max_num_seqs=32,
                                                max_num_batched_tokens=1024),
                            workload=WorkloadSpec(trace="azure-conv", num_requests=300, duration_s=None, rate=12.0,
                                                  max_tokens=8000))
        runs[ff] = sim.run(scenario)
    a, b = (runs[ff].requests.sort("request_id") for ff in (True, False))
    for col in ("ttft_s", "tpot_s", "e2e_s", "itl_p50_s", "itl_max_s", "queue_delay_s"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=col)
    assert a["preemptions"].to_list() == b["preemptions"].to_list()
    assert runs[True].summary["preemptions"] > 0
    assert runs[True].info["engine_events"] < runs[False].info["engine_events"]
