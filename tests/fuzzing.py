"""What every fuzz suite asserts of one CLI invocation: exit 0 with a whole result, or exit 2 with one line and no
files; never a traceback; and all of it within a memory bound, so that a case that would allocate without limit
fails the test with a MemoryError instead of taking the machine down."""

from __future__ import annotations

import json
import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner, Result

from sim.cli import app

runner = CliRunner()
HEADROOM = 2 * 2**30  # address space a case may add; the suites' valid cases need well under 100 MB


def _address_space() -> int:
    return int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


@contextmanager
def memory_bound(headroom: int = HEADROOM) -> Iterator[None]:
    """RLIMIT_AS at the process's current size plus `headroom` while the block runs (a soft limit, raised back
    after); a no-op where /proc or the limit is not available."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        bound = _address_space() + headroom
        if hard != resource.RLIM_INFINITY:
            bound = min(bound, hard)
        resource.setrlimit(resource.RLIMIT_AS, (bound, hard))
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def invoke(args: list[str]) -> Result:
    with memory_bound():
        return runner.invoke(app, args)


def assert_result_or_one_line(res: Result, out: Path, context: object, must_name: str | None = None,
                              count: str = "num_requests") -> None:
    """`context` is shown on failure (the case); `must_name`, when given, must appear in the error line (the file);
    `count` is the summary field that must be >= 1 in a whole result."""
    assert res.exception is None or isinstance(res.exception, SystemExit), (context, repr(res.exception))
    assert res.exit_code in (0, 2), (context, res.exit_code, res.output[-500:])
    if res.exit_code == 0:
        assert json.loads(res.stdout)[count] >= 1 and (out / "summary.json").exists(), context
    else:
        lines = [line for line in res.stderr.splitlines() if line.strip() and not line.startswith("note:")]
        assert len(lines) == 1 and lines[0].startswith("error: "), (context, lines)
        if must_name is not None:
            assert must_name in lines[0], (context, lines[0])
        assert not out.exists() or not any(out.iterdir()), (context, "files left behind")
