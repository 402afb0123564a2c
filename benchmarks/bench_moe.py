"""Speed of MoE runs under expert parallelism, and what each routing and balancing policy costs (prints figures;
asserts nothing).

    python benchmarks/bench_moe.py

DeepSeek-V3 (FP8) on 32 x H100 (4 nodes, InfiniBand NDR between them), one replica with data-parallel attention on
32 ranks and EP32, 2,000 requests of the shipped Azure conversation trace rescaled to 20 requests/s. Target: <= 10 s per run.
The first run is uniform routing; the others skew the routing and apply a policy.
"""

from __future__ import annotations

import resource
import time

import sim

RUNS = [("uniform", "ep"), ("zipf:1.2", "ep"), ("zipf:1.2", "eplb:32"), ("zipf:1.2", "eplb:32:hierarchical"),
        ("zipf:1.2", "eplb:32:2000"), ("zipf:1.2", "llep"), ("hot:0.3:8:packed", "ep"), ("hot:0.3:8:packed", "llep")]


def main() -> None:
    print("routing            policy                  wall s  steps    imbalance  TPOT mean ms  TTFT p99 ms  "
          "tok/s    peak RSS MB")
    for routing, policy in RUNS:
        t0 = time.perf_counter()
        r = sim.run(model="deepseek-v3", gpu="h100", num_gpus=32, tp=1, attn_dp=32, ep=32,
                    moe_routing=routing, moe_policy=policy, **{"workload.num_requests": 2000,
                                                             "workload.duration_s": float("inf"),
                                                             "workload.rate": 20.0})
        wall = time.perf_counter() - t0
        s = r.summary
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{routing:17s}  {policy:22s}  {wall:6.2f}  {r.info['engine_steps']:7,}  "
              f"{s.get('moe_imbalance', 1.0):9.2f}  {s['tpot_mean_s'] * 1e3:12.1f}  {s['ttft_p99_s'] * 1e3:11.1f}  "
              f"{s['output_tokens_per_s']:7,.0f}  {rss:11.0f}", flush=True)


if __name__ == "__main__":
    main()
