"""Invariants of the serving engine on generated workloads (property tests)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_checked, synthetic
from sim import EngineConfig
from sim.serving.request import FINISHED

engines = st.builds(
    EngineConfig,
    policy=st.sampled_from(["continuous", "static"]),
    max_num_seqs=st.sampled_from([4, 16, 64]),
    max_num_batched_tokens=st.sampled_from([64, 256, 2048]),
    chunked_prefill=st.booleans(),
    block_size=st.sampled_from([8, 16]),
    enable_prefix_caching=st.booleans(),
    num_gpu_blocks_override=st.sampled_from([None, 300, 1200]),
    fast_forward=st.booleans(),
)


@given(engine=engines, seed=st.integers(0, 10_000), rate=st.floats(0.5, 40.0), n=st.integers(1, 120),
       replicas=st.integers(1, 3), router=st.sampled_from(["round-robin", "least-tokens", "prefix-aware"]))
def test_every_request_finishes_once_with_its_tokens_and_kv_is_conserved(engine, seed, rate, n, replicas, router):
    scenario = synthetic("llama-2-7b", "a100", rate=rate, n=n, seed=seed, replicas=replicas, engine=engine,
                         router=router, input_len="lognormal:300:1.0", output_len="lognormal:60:1.0",
                         max_tokens=2000)  # the smallest KV cache drawn holds 2,376 tokens
    sim, seen = run_checked(scenario)
    assert sorted(seen) == list(range(n)) and set(seen.values()) == {1}
    for r in sim.requests:
        if r.state == FINISHED:
            assert r.generated == r.output
            assert r.first_token_time <= r.finish_time
            assert r.arrival <= r.first_scheduled <= r.first_token_time
        else:
            assert r.prompt + r.output > sim.max_model_len  # only over-long requests are rejected
    for rep in [lane for r in sim.fleet.replicas for lane in r.lanes]:
        kv = rep.kv
        kv.check()
        assert kv.peak_used <= kv.num_blocks
        assert kv.used == 0 and not kv.active, "all KV blocks are free (or merely cached) at the end"
        assert not rep.running and not rep.waiting and rep.n_dec == 0


@settings(max_examples=max(15, settings().max_examples // 3))
@given(engine=engines, start=st.integers(0, 1800), n=st.integers(1, 150), rate=st.floats(0.2, 5.0),
       blocks=st.sampled_from([2000, 6000, 20000]))
def test_invariants_hold_with_shared_prefixes_from_a_real_trace(engine, start, n, rate, blocks):
    import dataclasses

    from sim import Scenario, WorkloadSpec
    from sim.runner import build, execute

    engine = dataclasses.replace(engine, num_gpu_blocks_override=blocks, block_size=16)
    scenario = Scenario(model="llama-3.1-8b", gpu="h100", num_gpus=2, router="prefix-aware", engine=engine,
                        workload=WorkloadSpec(trace="mooncake-conv", rate=rate, num_requests=start + n,
                                              duration_s=None, max_tokens=30_000))
    simulation = build(scenario)
    simulation.requests = simulation.requests[start:]
    execute(simulation)
    for r in simulation.requests:
        assert r.state == FINISHED or r.prompt + r.output > simulation.max_model_len
        if r.state == FINISHED:
            assert r.generated == r.output
    for rep in [lane for r in simulation.fleet.replicas for lane in r.lanes]:
        rep.kv.check()
        assert rep.kv.peak_used <= rep.kv.num_blocks
        assert rep.kv.used == 0 and not rep.kv.active


def _table(seed):
    scenario = synthetic("llama-3.1-8b", rate=8.0, n=150, seed=seed,
                         engine=EngineConfig(num_gpu_blocks_override=600, max_num_seqs=32))
    import sim

    return sim.run(scenario).requests.drop("replica")


def test_same_seed_same_results_other_seed_different():
    a, b, c = _table(1), _table(1), _table(2)
    assert a.equals(b)
    assert not a.equals(c)
