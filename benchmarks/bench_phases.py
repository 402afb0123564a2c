"""Where a run's CPU time goes, phase by phase: import, build (trace, requests, engines), the simulation loop and
the metrics (per-request table, ITL statistics, summary). Prints figures; asserts nothing.

    python benchmarks/bench_phases.py               # benchmark (b): 10,000 requests
    python benchmarks/bench_phases.py 100000        # the same workload with more requests (1000000: the 1M case)

Benchmark (b) is bench_run.py's: Llama-2-70B at TP2 on one A100 replica, Poisson 1 req/s, lengths from the Azure
conversation trace, chunk 512, at most 128 sequences. CPU seconds (process time), peak RSS of the process.
"""

from __future__ import annotations

import resource
import sys
import time


def main(n: int) -> None:
    t = time.process_time()
    import sim.runner as runner
    from sim.scenario import Scenario
    from sim.serving.engine_config import EngineConfig
    from sim.workload.spec import WorkloadSpec

    phases = {"import": time.process_time() - t}
    scenario = Scenario(model="llama-2-70b", gpu="a100", num_gpus=2, tp=2,
                        engine=EngineConfig(max_num_batched_tokens=512, max_num_seqs=128),
                        workload=WorkloadSpec(trace="azure-conv", arrival="poisson", rate=1.0, num_requests=n,
                                              duration_s=None, input_len="empirical", output_len="empirical"))
    t = time.process_time()
    simulation = runner.build(scenario)
    phases["build"] = time.process_time() - t
    t = time.process_time()
    runner.execute(simulation)
    phases["loop"] = time.process_time() - t
    t = time.process_time()
    result = runner.collect(scenario, simulation, 0.0)
    phases["metrics"] = time.process_time() - t
    total = sum(phases.values())
    steps = result.info["engine_steps"]
    print(f"{n:,} requests, {steps:,} engine steps, {result.info['engine_events']:,} events: "
          f"{total:.2f} s CPU in all, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    for name, s in phases.items():
        print(f"  {name:8s} {s:8.2f} s  {s / total:6.1%}")
    print(f"  loop per engine step {phases['loop'] / steps * 1e6:.1f} us, per request {phases['loop'] / n * 1e6:.0f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
