"""Speed of `fleetsim search` (prints figures; asserts nothing).

    python benchmarks/bench_search.py

The full search for Llama-3.1-70B on up to 16 x H100 (2 nodes of 8; the GPU count is a budget, so plans with
fewer replicas are searched too) with 2,000 requests of the Azure conversation trace: number of plans,
simulations, plans per second and wall time on this machine's cores; the same search re-ranked by cost (every
simulation reused from the store); the search over the plans that use all 16 GPUs (--all-gpus); then the time of
one plan-simulation of 1,000 requests. For reference, APEX+ takes 144 s for 26 plans on 8 GPUs with 1,024
requests (5.5 s per plan) on this kind of machine. Targets: <= 0.1 s per plan-simulation of 1,000 requests, <= 15 s
for the all-16-GPU search (issue 15), <= 60 s for the capacity search (issue 13).
"""

from __future__ import annotations

import os
import tempfile
import time

import polars as pl

import sim
import sim.runner  # noqa: F401  (sim's names load on first use: imported here, not inside the timed runs)
from sim.planner import SearchSpace, search


def main() -> None:
    workload = {"workload.trace": "azure-conv", "workload.num_requests": 2000, "workload.duration_s": None}
    with tempfile.TemporaryDirectory() as out:
        for label, space, objective, capacity in (
                ("search (budget of 16)", None, "goodput", False),
                ("same search, --objective cost", None, "cost", False),
                ("search, --all-gpus", SearchSpace(all_gpus=True), "goodput", False),
                ("capacity search (--capacity: every plan on all 16 GPUs)", None, "goodput", True)):
            t0 = time.perf_counter()
            r = search(model="llama-3.1-70b", gpu="h100", num_gpus=16, out_dir=out, space=space,
                       objective=objective, capacity=capacity, **workload)
            wall = time.perf_counter() - t0
            counts = r.table.group_by("status").len().sort("status")
            per_sim = r.table.filter(pl.col("status") == "ok")["eval_wall_s"]
            print(f"{label}: {r.table.height} plans ({', '.join(f'{s} {n}' for s, n in counts.iter_rows())}), "
                  f"{r.simulated} simulated and {r.reused} reused on {os.cpu_count()} cores in {wall:.1f} s; "
                  f"per plan: median {per_sim.median():.2f} s, max {per_sim.max():.2f} s")
            if r.winner:
                print(f"  winner: {r.winner['plan']} on {r.winner['num_gpus']} GPUs, seqs={r.winner['max_num_seqs']} "
                      f"chunk={r.winner['max_num_batched_tokens']}; {r.verdict['explanation']}")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        sim.run(model="llama-3.1-70b", gpu="h100", tp=4, num_gpus=16,
                **{"workload.num_requests": 1000, "workload.duration_s": None})
        times.append(time.perf_counter() - t0)
    # The first run of a plan in a process builds its step-cost model's memo tables; later runs of the same dense
    # plan reuse them (a capacity search's probes do).
    warm = sorted(times[1:])
    print(f"one plan-simulation of 1,000 requests (4 x TP4): first {times[0]:.3f} s, then best {warm[0]:.3f} s, "
          f"median {warm[len(warm) // 2]:.3f} s")


if __name__ == "__main__":
    main()
