"""Speed of MoE runs under expert parallelism, and what each routing and balancing policy costs (prints figures;
asserts nothing).

    python benchmarks/bench_moe.py

DeepSeek-V3 (FP8) on 32 x H100 (4 nodes, InfiniBand NDR between them), one replica with data-parallel attention on
32 ranks and EP32, 2,000 requests of the shipped Azure conversation trace rescaled to 20 requests/s. Target: <= 10 s per run.
The first run is uniform routing; the others skew the routing and apply a policy. Each line gives the busiest GPU's
load over the mean under plain EP and under the policy (weighted by every step's copies), the bytes a token's
copies move between GPUs over all MoE layers, and the share of busy time in the MoE experts and all-to-alls.
"""

from __future__ import annotations

import resource
import time

import sim

RUNS = [("uniform", "ep"), ("zipf:1.2", "ep"), ("zipf:1.2", "eplb:32"), ("zipf:1.2", "eplb:32:hierarchical"),
        ("zipf:1.2", "eplb:32:2000"), ("zipf:1.2", "llep"), ("hot:0.3:8:packed", "ep"), ("hot:0.3:8:packed", "llep"),
        ("uniform+affinity:0.9", "exflow")]


def main() -> None:
    print("routing            policy                  wall s  steps    imbalance    a2a MB/tok  MoE share  "
          "TPOT mean ms  TTFT p99 ms  tok/s    peak RSS MB")
    for routing, policy in RUNS:
        t0 = time.perf_counter()
        r = sim.run(model="deepseek-v3", gpu="h100", num_gpus=32, tp=1, attn_dp=32, ep=32,
                    moe_routing=routing, moe_policy=policy, **{"workload.num_requests": 2000,
                                                             "workload.duration_s": float("inf"),
                                                             "workload.rate": 20.0})
        wall = time.perf_counter() - t0
        s = r.summary
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        imbalance = f"{s['moe_imbalance_before']:.2f}->{s['moe_imbalance']:.2f}"
        print(f"{routing:17s}  {policy:22s}  {wall:6.2f}  {r.info['engine_steps']:7,}  {imbalance:11s}  "
              f"{s['moe_a2a_bytes_per_token'] / 1e6:10.2f}  {s['moe_time_share']:9.2f}  "
              f"{s['tpot_mean_s'] * 1e3:12.1f}  {s['ttft_p99_s'] * 1e3:11.1f}  {s['output_tokens_per_s']:7,.0f}  "
              f"{rss:11.0f}", flush=True)


if __name__ == "__main__":
    main()
