"""Malformed rows of a trace: fail on the first one (naming file:line:column), or skip them and count."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.errors import FleetsimError

SAMPLES = 5


@dataclass
class BadRows:
    """Where a reader reports each malformed row. Strict (the default) raises on the first; with `skip` the row is
    dropped, counted, and the first few messages are kept to show."""

    origin: str
    skip: bool = False
    count: int = 0
    samples: list[str] = field(default_factory=list)

    def report(self, line: int, column: int | None, name: str, expected: str, got: object) -> None:
        self.problem(line, column, f"field '{name}' must be {expected}, got {_show(got)}")

    def problem(self, line: int, column: int | None, what: str) -> None:
        message = f"{self.origin}:{line}" + (f":{column}" if column else "") + f": {what}"
        if not self.skip:
            raise FleetsimError(message + " (--skip-bad-rows drops such rows)")
        self.count += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(message)

    def note(self) -> str:
        """One line for the load report, or '' when every row was good."""
        if not self.count:
            return ""
        return f"{self.count:,} malformed row(s) skipped; first: " + " | ".join(self.samples)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
