"""Progress of a parallel run, one line each time a unit finishes.

On a terminal every finished unit gets a (dimmed) line; in a log (not a
terminal) a line at most every ``LOG_INTERVAL`` seconds, plus the last one,
so CI logs stay short. Nothing at ``-v 0``. The line ends the row of dots at
``-v 1`` and stands on its own at ``-v 2``, so it never splits a test's
output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from ..parallel import protocol as p
from ..parallel.controller import RunListener
from ..planning.groups import Unit

LOG_INTERVAL = 10.0


class Progress(RunListener):
    def __init__(self, stream: Any, units: Sequence[Unit], *, verbosity: int) -> None:
        self.stream = stream
        self.units = units
        self.total = len(units)
        self.verbosity = verbosity
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.started = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.running: dict[int, str] = {}  # slot -> its unit's short label
        self.counts = dict.fromkeys(
            ("passed", "failed", "skipped", "expected failures"), 0
        )

    # -- RunListener ---------------------------------------------------------

    def unit_started(self, slot: int, unit: int, phase: str) -> None:
        self.running[slot] = self.units[unit].short_label

    def unit_ended(self, slot: int, unit: int, outcome: str) -> None:
        self.running.pop(slot, None)

    def test_done(self, slot: int, record: p.TestRecord) -> None:
        self.counts[outcome_of(record)] += 1

    def unit_finished(self, unit: int) -> None:
        self.done += 1
        self.show()

    # -- the line ------------------------------------------------------------

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        tests = ", ".join(
            f"{count} {name}"
            for name, count in self.counts.items()
            if count or name in ("passed", "failed")
        )
        width = len(str(self.total))
        text = f"[{self.done:>{width}}/{self.total} units | {tests} | {elapsed:.1f}s"
        if self.running:
            text += f" | running: {', '.join(self.running.values())}"
        return text + "]"

    def show(self) -> None:
        if self.verbosity < 1:
            return
        now = time.monotonic()
        final = self.done >= self.total
        if not (self.tty or final or now - self.last >= LOG_INTERVAL):
            return
        self.last = now
        text = self.line()
        if self.tty:
            text = f"\x1b[2m{text}\x1b[0m"
        prefix = " " if self.verbosity == 1 else ""
        sys.stdout.flush()  # keep earlier stdout lines before this one in logs
        self.stream.write(f"{prefix}{text}\n")
        self.stream.flush()


def outcome_of(record: p.TestRecord) -> str:
    """How the progress line counts a test."""
    if record.failed:
        return "failed"
    if any(isinstance(o, p.ExpectedFailure) for o in record.outcomes):
        return "expected failures"
    if any(isinstance(o, p.Skip) for o in record.outcomes):
        return "skipped"
    return "passed"
