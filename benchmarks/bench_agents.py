"""Speed of agent workloads (prints figures; asserts nothing).

    python benchmarks/bench_agents.py

500 agent jobs x 20 LLM calls (SWE-bench-like: contexts growing to tens of thousands of tokens, lognormal tool
times with a 1 s median and a long tail) on Llama-3.1-70B, TP8 on 8 x H100, 64 agents at a time. Target: <= 10 s.
"""

from __future__ import annotations

import resource
import time

import sim
from sim.agents import AgentSpec


def main() -> None:
    spec = AgentSpec(programs=500, agents=64, turns=20, first_prompt="lognormal:6000:0.4",
                     new_tokens="lognormal:1500:0.8", output_tokens="lognormal:250:0.7",
                     tool_time="lognormal:1.0:1.5", kv_policy="evict")
    for policy in ("evict", "continuum"):
        t0 = time.perf_counter()
        r = sim.run(model="llama-3.1-70b", gpu="h100", tp=8, num_gpus=8,
                    agents=AgentSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__},
                                        "kv_policy": policy}))
        wall = time.perf_counter() - t0
        s = r.summary
        print(f"{policy:9s}: 500 jobs x 20 calls in {wall:.2f} s wall ({r.info['engine_events']:,} events, "
              f"{r.info['engine_steps']:,} steps), peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB | mean JCT {s['jct_mean_s']:.1f} s, "
              f"p99 {s['jct_p99_s']:.1f} s, preemptions {s['preemptions']}, re-prefilled {s['reprefill_tokens']:,}")


if __name__ == "__main__":
    main()
