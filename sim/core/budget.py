"""What a run or a search would need, estimated before any of it is built, and refused with one line when the
machine cannot give it: a typo (1e8 requests, 1e12 GPUs) should not take the machine's memory and a minute to fail.

The per-item sizes are measured (benchmarks/, issue 15's profile: about 12 KB of memory per simulated request at 1M
requests, metrics included) and rounded up; the estimate only has to be right within a factor of a few.
"""

from __future__ import annotations

import os

from sim.errors import FleetsimError

BYTES_PER_REQUEST = 12_000  # request state, its table row, its latencies
BYTES_PER_ENGINE = 200_000  # a scheduler, its KV bookkeeping, its step-cost caches
MAX_GPUS = 1 << 20  # no cluster has more: a larger count is a typo
MAX_PLANS = 200_000  # a search enumerating more is not what anyone meant


def available_bytes() -> int:
    """Memory this process may still take: MemAvailable where Linux reports it, else physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_memory(what: str, count: int, each: int, lower: str) -> None:
    """Refuse `count` items of `each` bytes when they would take more than 80% of the available memory."""
    need = count * each
    have = available_bytes()
    if need > 0.8 * have:
        raise FleetsimError(f"{what}: {count:,} would need about {_gb(need)} of memory and {_gb(have)} is free; "
                            f"lower {lower}")


def check_gpus(count: int, field: str) -> None:
    if count > MAX_GPUS:
        raise FleetsimError(f"{field}: {count:,} GPUs is more than any cluster ({MAX_GPUS:,} at most)")


def check_workers(workers: int | None) -> tuple[int | None, str]:
    """Workers capped at this machine's cores (more only compete for them), with a note when capped."""
    cores = os.cpu_count() or 1
    if workers is not None and workers > cores:
        return cores, f"--workers {workers}: this machine has {cores} cores; using {cores}"
    return workers, ""
