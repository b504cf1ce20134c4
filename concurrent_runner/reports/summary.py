"""A short list of what failed, before unittest's summary line.

After the full tracebacks, a run with failures ends with one line per failed
or errored test (or fixture), with the exception's one-line message, as
pytest's "short test summary info" does: what to look at, without scrolling
back. Printed at every verbosity, also ``-v 0``.
"""

from __future__ import annotations

import unittest
from typing import Any

#: The longest message shown on one line.
WIDTH = 160


def test_name(test: Any) -> str:
    """A test's id; a subtest's, with its parameters; a fixture's description."""
    if isinstance(test, unittest.suite._ErrorHolder):  # type: ignore[attr-defined]
        return str(test.description)
    return str(test.id())


def one_line(text: str) -> str:
    """The exception's own line out of a formatted traceback: the first line
    after the last traceback's frames (for a chained exception, the last
    one's), which names the exception and starts its message."""
    lines = text.splitlines()
    marker = "Traceback (most recent call last):"
    starts = [i for i, line in enumerate(lines) if line.startswith(marker)]
    rest = lines[starts[-1] + 1 :] if starts else lines
    line = next((line for line in rest if line.strip() and not line[:1].isspace()), "")
    return line if len(line) <= WIDTH else line[: WIDTH - 3] + "..."


def summary_lines(result: unittest.TestResult) -> list[str]:
    lines = []
    for kind, entries in (
        ("FAIL", result.failures),
        ("ERROR", result.errors),
    ):
        for test, text in entries:
            lines.append(f"{kind} {test_name(test)} - {one_line(text)}")
    for test in result.unexpectedSuccesses:
        lines.append(f"UNEXPECTED SUCCESS {test_name(test)}")
    return lines


class ShortSummary:
    """Mixed into the run's result class: the short list after the errors."""

    def printErrors(self) -> None:
        super().printErrors()  # type: ignore[misc]
        lines = summary_lines(self)  # type: ignore[arg-type]
        if not lines:
            return
        stream = self.stream  # type: ignore[attr-defined]
        stream.writeln(self.separator1)  # type: ignore[attr-defined]
        stream.writeln("short test summary info")
        for line in lines:
            stream.writeln(line)
        # Set by a parallel run (reproduce.Sequences): how to rerun a
        # failure in the order its worker ran it.
        for line in getattr(self, "reproduce_hints", ()):
            stream.writeln(line)
        stream.flush()
