"""Where a run's CPU time goes, phase by phase: import, build (trace, requests, engines), the simulation loop and
the metrics (per-request table, ITL statistics, summary). Prints figures; asserts nothing.

    python benchmarks/bench_phases.py               # benchmark (b): 10,000 requests
    python benchmarks/bench_phases.py 100000        # the same workload with more requests (1000000: the 1M case)

Benchmark (b) is bench_run.py's: Llama-2-70B at TP2 on one A100 replica, Poisson 1 req/s, lengths from the Azure
conversation trace, chunk 512, at most 128 sequences. CPU seconds (process time), peak RSS of the process.
"""

from __future__ import annotations

import heapq
import resource
import sys
import time


def bare_loop(steps: int) -> float:
    """CPU seconds of the least a discrete-event loop can do per engine step in Python: a heap calendar of
    (time, sequence, process) entries and one generator process resumed per step, as SimPy does, with nothing
    simulated. The issue's yardstick for the simulation loop's overhead."""

    def engine():  # noqa: ANN202
        while True:
            yield 0.01

    calendar: list[tuple[float, int, object]] = []
    procs = [engine() for _ in range(2)]
    for i, proc in enumerate(procs):
        heapq.heappush(calendar, (next(proc), i, proc))
    t = time.process_time()
    seq = len(procs)
    for _ in range(steps):
        now, _, proc = heapq.heappop(calendar)
        seq += 1
        heapq.heappush(calendar, (now + proc.send(None), seq, proc))
    return time.process_time() - t


def bare_simpy(steps: int) -> float:
    """CPU seconds of SimPy itself doing one timeout per engine step (two engine processes), nothing simulated."""
    import simpy

    env = simpy.Environment()

    def engine():  # noqa: ANN202
        for _ in range(steps // 2):
            yield env.timeout(0.01)

    env.process(engine())
    env.process(engine())
    t = time.process_time()
    env.run()
    return time.process_time() - t


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
    bare, des = bare_loop(steps), bare_simpy(steps)
    print(f"  the same {steps:,} steps as a bare heap loop: {bare:.3f} s (the simulation loop is "
          f"{phases['loop'] / bare:.1f}x it); as one SimPy timeout each: {des:.3f} s ({phases['loop'] / des:.1f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
