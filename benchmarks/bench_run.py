"""Speed of `fleetsim run`: wall time, engine events per second and peak memory (prints figures; asserts nothing).

    python benchmarks/bench_run.py            # both cases, each run 5 times in fresh processes
    python benchmarks/bench_run.py b          # one case

Shared 2-core machines are noisy: the best and the median of the repeats are printed.

(a) the whole Azure conversation 2023 trace (19,366 requests) on Llama-3.1-8B x 8 H100 replicas;
(b) 10,000 requests of Llama-2-70B at TP2 on one A100 replica, Poisson 1 req/s, lengths from the Azure
    conversation trace, chunk 512, at most 128 sequences. Vidur takes about 30 s and 1.4 GB for (b).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

CASES = {
    "a": dict(model="llama-3.1-8b", gpu="h100", num_gpus=8, tp=1,
              workload=dict(trace="azure-conv", duration_s=float("inf"))),  # inf: the whole trace
    "b": dict(model="llama-2-70b", gpu="a100", num_gpus=2, tp=2,
              engine=dict(max_num_batched_tokens=512, max_num_seqs=128),
              workload=dict(trace="azure-conv", arrival="poisson", rate=1.0, num_requests=10_000, duration_s=None,
                            input_len="empirical", output_len="empirical")),
}


def run_case(name: str) -> dict:
    t_import = time.perf_counter()
    import sim
    import sim.runner  # noqa: F401  (sim's names load on first use: the import is timed here, not in the run)
    from sim.serving.engine_config import EngineConfig
    from sim.workload.spec import WorkloadSpec

    spec = dict(CASES[name])
    engine = EngineConfig(**spec.pop("engine", {}))
    workload = WorkloadSpec(**spec.pop("workload"))
    scenario = sim.Scenario(engine=engine, workload=workload, **spec)
    t0 = time.perf_counter()
    result = sim.run(scenario)
    wall = time.perf_counter() - t0
    s = result.summary
    return {
        "case": name, "requests": s["num_requests"], "finished": s["num_finished"], "wall_s": round(wall, 3),
        "import_s": round(t0 - t_import, 3), "engine_events": result.info["engine_events"],
        "events_per_s": round(result.info["engine_events"] / wall), "engine_steps": result.info["engine_steps"],
        "steps_per_s": round(result.info["engine_steps"] / wall),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "ttft_p50_s": round(s["ttft_p50_s"], 4), "tpot_p50_s": round(s["tpot_p50_s"], 4),
        "throughput_rps": round(s["throughput_rps"], 3),
    }


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--child":
        print(json.dumps(run_case(argv[1])))
        return
    repeats = 5
    for name in argv or sorted(CASES):
        runs = []
        for _ in range(repeats):
            proc = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr)
            runs.append(json.loads(proc.stdout))
        runs.sort(key=lambda r: r["wall_s"])
        best, median = runs[0], runs[len(runs) // 2]
        print(f"({name}) {best['requests']:,} requests: wall best {best['wall_s']:.2f} s, median {median['wall_s']:.2f} s "
              f"(+{best['import_s']:.2f} s imports); {best['engine_events']:,} events "
              f"({best['engine_events'] / median['wall_s']:,.0f}/s at the median), {best['engine_steps']:,} engine steps "
              f"({best['engine_steps'] / median['wall_s']:,.0f}/s); peak RSS {max(r['peak_rss_mb'] for r in runs)} MB | "
              f"TTFT p50 {best['ttft_p50_s']} s, TPOT p50 {best['tpot_p50_s']} s, {best['throughput_rps']} req/s")

if __name__ == "__main__":
    main(sys.argv[1:])
