"""Start-up cost: CPU seconds and peak memory of fresh processes that only import or print help (prints figures;
asserts nothing). Issue 15's targets: `fleetsim --help` <= 0.3 s CPU, `import sim` <= 0.4 s.

    python benchmarks/bench_startup.py        # each case 7 times, min and median

CPU time (user + system of the child) is what the targets name: it does not count time the process waits for a
busy machine's cores, which wall time on a shared 2-core machine does. Each case runs once first, unmeasured, with
bytecode writing allowed, so that the figures are those of an installed package (pip compiles its .pyc files); an
environment with PYTHONDONTWRITEBYTECODE=1 recompiles fleetsim's modules on every start (about 70 ms more).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

FLEETSIM = str(Path(sys.executable).with_name("fleetsim"))
# What typer's rich help costs any program (rich.markdown, pygments, rich.traceback, whatever the program): fleetsim
# renders its help as plain click text instead.
TYPER_FLOOR = ("import typer\napp = typer.Typer()\n@app.command()\ndef a(x: int = 1):\n    'A.'\n"
               "@app.command()\ndef b(y: int = 2):\n    'B.'\napp()")
CASES = {
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
    "a two-command typer app's rich --help (for scale)": [sys.executable, "-c", TYPER_FLOOR, "--help"],
    "import sim": [sys.executable, "-c", "import sim"],
    "import sim.runner (the simulator, polars, numpy)": [sys.executable, "-c", "import sim.runner"],
    "from sim import run; sim.run's first touch": [sys.executable, "-c", "import sim; sim.run"],
    "fleetsim --help": [FLEETSIM, "--help"],
    "fleetsim run --help": [FLEETSIM, "run", "--help"],
}


def cpu_of(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of one fresh process, from its own rusage (wait4), not all children's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**env, "COLUMNS": "120"})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main(repeats: int = 7) -> None:
    print(f"{'case':52s} {'min CPU s':>10s} {'median':>8s} {'peak MB':>8s}")
    for name, cmd in CASES.items():
        cpu_of(cmd)  # writes the bytecode caches
        runs = [cpu_of(cmd) for _ in range(repeats)]
        cpus = [c for c, _ in runs]
        print(f"{name:52s} {min(cpus):10.3f} {statistics.median(cpus):8.3f} {max(m for _, m in runs):8.0f}")


if __name__ == "__main__":
    main()
