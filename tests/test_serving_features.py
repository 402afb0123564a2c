"""Prefix caching on a real trace; chunked prefill against stalls."""

import sim
from helpers import synthetic
from sim import EngineConfig, Scenario, WorkloadSpec


def test_prefix_caching_on_the_mooncake_conversation_trace(shared_data):
    trace = shared_data / "traces/mooncake_fast25/conversation_trace.jsonl"
    results = {}
    for caching in (True, False):
        scenario = Scenario(model="llama-3.1-8b", gpu="h100", num_gpus=8, router="prefix-aware",
                            engine=EngineConfig(enable_prefix_caching=caching),
                            workload=WorkloadSpec(trace=str(trace), num_requests=1500, duration_s=None))
        results[caching] = sim.run(scenario).summary
    on, off = results[True], results[False]
    print(f"\nMooncake conversation, 1500 requests: hit rate {on['prefix_hit_rate']:.1%}, "
          f"mean TTFT {on['ttft_mean_s'] * 1e3:.0f} ms with caching vs {off['ttft_mean_s'] * 1e3:.0f} ms without")
    assert on["prefix_hit_rate"] > 0.1
    assert off["prefix_hit_rate"] == 0.0
    assert on["ttft_mean_s"] < off["ttft_mean_s"]


def test_chunked_prefill_lowers_p99_itl_on_long_prompts_and_long_outputs():
    p99 = {}
    for chunked in (True, False):
        # One engine (vllm-v0, which can do either) so only the knob differs.
        eng = EngineConfig(preset="vllm-v0", chunked_prefill=chunked, max_num_batched_tokens=512 if chunked else 8192)
        scenario = synthetic("llama-3.1-8b", "h100", rate=1.5, n=300, seed=4, engine=eng,
                             input_len="lognormal:6000:0.3", output_len="lognormal:400:0.3")
        p99[chunked] = sim.run(scenario).summary["itl_p99_s"]
    print(f"\np99 ITL: chunked {p99[True] * 1e3:.1f} ms, unchunked {p99[False] * 1e3:.1f} ms")
    assert p99[True] < 0.6 * p99[False]


def test_preemption_happens_under_memory_pressure_and_all_finish():
    scenario = synthetic("llama-3.1-8b", "h100", rate=20.0, n=200, seed=7,
                         engine=EngineConfig(num_gpu_blocks_override=500, max_num_seqs=64),
                         input_len="fixed:1000", output_len="fixed:500")
    s = sim.run(scenario).summary
    assert s["preemptions"] > 0
    assert s["num_finished"] == 200
    assert s["kv_util_peak"] <= 1.0


def test_preempted_requests_reuse_their_cached_blocks_when_prefix_caching_is_on():
    """vLLM v1 keeps a preempted request's computed blocks in the prefix cache, so recomputation is partly free."""
    runs = {}
    for caching in (True, False):
        scenario = synthetic("llama-3.1-8b", "h100", rate=20.0, n=300, seed=7, input_len="lognormal:3000:0.3",
                             output_len="fixed:300",
                             engine=EngineConfig(num_gpu_blocks_override=800, max_num_seqs=64,
                                                 max_num_batched_tokens=512, enable_prefix_caching=caching))
        runs[caching] = sim.run(scenario)
    on, off = runs[True].summary, runs[False].summary
    print(f"\npreemptions {on['preemptions']} with prefix caching, {off['preemptions']} without; "
          f"hit rate {on['prefix_hit_rate']:.1%}; makespan {on['duration_s']:.0f} s vs {off['duration_s']:.0f} s")
    assert on["preemptions"] > 0 and off["preemptions"] > 0
    assert on["prefix_hit_rate"] > 0.05 and off["prefix_hit_rate"] == 0.0
    # A prefilling request that preempts itself resumes from its cached chunks instead of thrashing.
    assert on["preemptions"] < off["preemptions"] / 2
    assert on["duration_s"] < 0.8 * off["duration_s"]
