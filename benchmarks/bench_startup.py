"""Start-up cost: CPU seconds and peak memory of fresh processes that only import or print help (prints figures;
asserts nothing). Issue 15's targets: `fleetsim --help` <= 0.3 s CPU, `import sim` <= 0.4 s.

    python benchmarks/bench_startup.py        # each case 7 times, min and median

CPU time (user + system of the child) is what the targets name: it does not count time the process waits for a
busy machine's cores, which wall time on a shared 2-core machine does.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

FLEETSIM = str(Path(sys.executable).with_name("fleetsim"))
CASES = {
    "import sim": [sys.executable, "-c", "import sim"],
    "import sim.runner (the simulator, polars, numpy)": [sys.executable, "-c", "import sim.runner"],
    "from sim import run; sim.run's first touch": [sys.executable, "-c", "import sim; sim.run"],
    "fleetsim --help": [FLEETSIM, "--help"],
    "fleetsim run --help": [FLEETSIM, "run", "--help"],
}


def cpu_of(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env={**os.environ, "COLUMNS": "120"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, after.ru_maxrss / 1024


def main(repeats: int = 7) -> None:
    print(f"{'case':52s} {'min CPU s':>10s} {'median':>8s} {'peak MB':>8s}")
    for name, cmd in CASES.items():
        runs = [cpu_of(cmd) for _ in range(repeats)]
        cpus = [c for c, _ in runs]
        print(f"{name:52s} {min(cpus):10.3f} {statistics.median(cpus):8.3f} {max(m for _, m in runs):8.0f}")


if __name__ == "__main__":
    main()
