"""Trace loading and replay speed (prints figures; asserts nothing).

    python benchmarks/bench_traces.py [--rows 1000000]

1. A generated Azure-format CSV of `--rows` rows (default 1 million): load time and peak memory, each measured in a
   fresh process (peak RSS of the process, and above the RSS it had after importing fleetsim). Target: <= 3 s and
   <= 500 MB for 1M rows.
2. The Mooncake conversation trace (../shared/data, or the shipped 2,000-row sample): load, then replay on
   Llama-3.1-70B, four TP8 replicas on 32 x H100 behind the prefix-aware router.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Peak RSS from /proc's VmHWM where there is one: ru_maxrss survives exec on Linux, so a child would report its
# parent's peak (this script's, after generating the CSV).
_LOAD = """
import json, resource, sys, time
def peak_kb():
    try:
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import sim.workload.traces as traces
base = peak_kb()
t0 = time.perf_counter()
t = traces.read_trace(sys.argv[1])
wall = time.perf_counter() - t0
peak = peak_kb()
print(json.dumps({"rows": t.table.height, "wall_s": wall, "peak_mb": peak / 1024, "above_import_mb": (peak - base) / 1024}))
"""


def write_azure_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.05, rows))
    base = np.datetime64("2024-05-10T00:00:00", "us")
    stamps = (base + (t * 1e6).astype("timedelta64[us]")).astype(str)
    inp = rng.integers(1, 8000, rows)
    out = rng.integers(1, 1000, rows)
    with open(path, "w") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        step = 200_000
        for i in range(0, rows, step):
            fh.write("".join(f"{s.replace('T', ' ')},{a},{b}\n"
                             for s, a, b in zip(stamps[i:i + step], inp[i:i + step], out[i:i + step])))


def load_in_fresh_process(path: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "azure_big.csv"
        t0 = time.perf_counter()
        write_azure_csv(csv, args.rows)
        print(f"generated {args.rows:,}-row Azure CSV ({csv.stat().st_size / 1e6:,.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")
        r = load_in_fresh_process(csv)
        print(f"load: {r['rows']:,} rows in {r['wall_s']:.2f} s; peak RSS {r['peak_mb']:,.0f} MB "
              f"({r['above_import_mb']:,.0f} MB above the process after imports)")
    import sim
    from sim.workload.traces import read_trace

    shared = ROOT.parent / "shared/data/traces/mooncake_fast25/conversation_trace.jsonl"
    trace = shared if shared.exists() else "mooncake-conv"
    r = load_in_fresh_process(Path(trace)) if shared.exists() else None
    if r:
        print(f"mooncake conversation load: {r['rows']:,} rows in {r['wall_s']:.2f} s, peak RSS {r['peak_mb']:,.0f} MB")
    t0 = time.perf_counter()
    rows = read_trace(trace).table.height
    result = sim.run(model="llama-3.1-70b", gpu="h100", tp=8, num_gpus=32, router="prefix-aware",
                     **{"workload.trace": str(trace), "workload.duration_s": float("inf")})
    s = result.summary
    print(f"mooncake conversation replay: {rows:,} requests, load + simulate {time.perf_counter() - t0:.2f} s "
          f"(simulate {s['sim_wall_s']:.2f} s); TTFT p90 {s['ttft_p90_s']:.2f} s, prefix hit rate "
          f"{s['prefix_hit_rate']:.2f}")


if __name__ == "__main__":
    main()
