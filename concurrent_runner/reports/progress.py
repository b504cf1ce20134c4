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
from typing import Any

LOG_INTERVAL = 10.0


class Progress:
    def __init__(self, stream: Any, total_units: int, *, verbosity: int) -> None:
        self.stream = stream
        self.total = total_units
        self.verbosity = verbosity
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.started = time.monotonic()
        self.last = 0.0
        self.passed = self.failed = self.skipped = 0

    def count(self, *, failed: bool, skipped: bool) -> None:
        if failed:
            self.failed += 1
        elif skipped:
            self.skipped += 1
        else:
            self.passed += 1

    def line(self, done: int, running: list[str]) -> str:
        elapsed = time.monotonic() - self.started
        tests = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            tests += f", {self.skipped} skipped"
        width = len(str(self.total))
        text = f"[{done:>{width}}/{self.total} units | {tests} | {elapsed:.1f}s"
        if running:
            text += f" | running: {', '.join(running)}"
        return text + "]"

    def unit_done(self, done: int, running: list[str]) -> None:
        if self.verbosity < 1:
            return
        now = time.monotonic()
        final = done >= self.total
        if not (self.tty or final or now - self.last >= LOG_INTERVAL):
            return
        self.last = now
        text = self.line(done, running)
        if self.tty:
            text = f"\x1b[2m{text}\x1b[0m"
        prefix = " " if self.verbosity == 1 else ""
        sys.stdout.flush()  # keep earlier stdout lines before this one in logs
        self.stream.write(f"{prefix}{text}\n")
        self.stream.flush()
