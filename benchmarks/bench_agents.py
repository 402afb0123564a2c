"""Speed of agent workloads, and what each KV retention policy does to them (prints figures; asserts nothing).

    python benchmarks/bench_agents.py

500 agent jobs x 20 LLM calls (SWE-bench-like: contexts growing to tens of thousands of tokens, lognormal tool
times with a 1 s median and a long tail) on Llama-3.1-70B, TP8 on 8 x H100, 40 agents at a time. Target: <= 10 s
per run. The same workload as tests/test_agents.py::test_swe_bench_like_workload_continuum_beats_evict_and_a_fixed_ttl.
"""

from __future__ import annotations

import resource
import time

import sim
from sim.agents import AgentSpec

RUNS = [("evict", "fcfs"), ("evict", "program"), ("pin:2", "program"), ("pin:10", "program"),
        ("pin:30", "program"), ("continuum", "program"), ("offload", "program")]


def main() -> None:
    print("policy     queue     wall s  events    mean JCT  p99 JCT  preemptions  re-prefilled  peak RSS MB")
    for policy, scheduling in RUNS:
        spec = AgentSpec(programs=500, agents=40, turns=20, first_prompt="lognormal:6000:0.4",
                         new_tokens="lognormal:1500:0.8", output_tokens="lognormal:250:0.7",
                         tool_time="lognormal:1.0:1.5", kv_policy=policy)
        t0 = time.perf_counter()
        r = sim.run(model="llama-3.1-70b", gpu="h100", tp=8, num_gpus=8, agents=spec,
                    engine={"scheduling": scheduling})
        wall = time.perf_counter() - t0
        s = r.summary
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{policy:9s}  {scheduling:8s}  {wall:6.2f}  {r.info['engine_events']:8,}  {s['jct_mean_s']:8.1f}  "
              f"{s['jct_p99_s']:7.1f}  {s['preemptions']:11,}  {s['reprefill_tokens']:12,}  {rss:11.0f}",
              flush=True)


if __name__ == "__main__":
    main()
