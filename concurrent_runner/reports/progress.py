"""The progress of a parallel run: a status line.

On a terminal it is one line at the bottom, redrawn in place (dimmed): tests
done of all, passed, failed, skipped, time spent, an estimate of the time
left (from the durations file's estimates of what is done and what is not)
and the units running now. Whatever the run reports makes way for it and
it comes back below. At ``-v 1`` it replaces unittest's row of dots, and a
failure is named on a line of its own as it happens; at ``-v 2`` unittest's
own lines do that.

In a log (not a terminal) it is a plain line when a unit finishes, at most
every ``LOG_INTERVAL`` seconds, one every ``HEARTBEAT`` seconds while a
long unit runs, and a last one; ``-v 0`` silences it everywhere.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..parallel import protocol as p
from ..parallel.controller import RunListener
from ..planning.groups import Unit

#: In a log, the least time between two lines for finished units...
LOG_INTERVAL = 5.0
#: ... and the most time without a line.
HEARTBEAT = 30.0
#: On a terminal, the most time between two redraws (the clock moves).
REDRAW = 0.5


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


class Progress(RunListener):
    def __init__(
        self,
        stream: Any,
        units: Sequence[Unit],
        *,
        verbosity: int,
        estimates: Sequence[float] | None = None,
        test_ids: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.units = units
        self.verbosity = verbosity
        self.estimates = list(estimates) if estimates else [1.0] * len(units)
        self.test_ids = test_ids
        self.total = sum(len(u.indices) for u in units)
        self.tty = is_terminal(stream)
        self.clock = clock
        self.started = clock()
        self.last = self.started  # when a line was last written or drawn
        self._reported: set[int] = set()  # indices of the tests reported
        self._finished: set[int] = set()  # indices of the units finished
        self.work_done = 0.0  # estimated seconds of the units finished
        self.running: dict[int, int] = {}  # slot -> unit
        self.counts = dict.fromkeys(
            ("passed", "failed", "skipped", "expected failures"), 0
        )
        self._shown = False  # the status line is on the terminal now
        self._ended = False
        self._logged = ""  # the tally of the last plain line written

    # -- RunListener ---------------------------------------------------------

    def unit_started(self, slot: int, unit: int, phase: str) -> None:
        self.running[slot] = unit
        self._redraw()

    def unit_ended(self, slot: int, unit: int, outcome: str) -> None:
        self.running.pop(slot, None)

    def unit_finished(self, unit: int) -> None:
        self.work_done += self.estimates[unit]
        self._finished.add(unit)
        if self.tty:
            self._redraw()
        elif self.clock() - self.last >= LOG_INTERVAL:
            self._write_line()

    def test_done(self, slot: int, record: p.TestRecord) -> None:
        self._reported.add(record.index)
        outcome = outcome_of(record)
        self.counts[outcome] += 1
        if outcome == "failed" and self._names_failures:
            kind = (
                "ERROR"
                if any(isinstance(o, p.Error) for o in record.outcomes)
                else "FAIL"
            )
            self._name(kind, self._id(record.index))

    def test_errored(self, slot: int, index: int) -> None:
        self._reported.add(index)
        self.counts["failed"] += 1
        if self._names_failures:
            self._name("ERROR", self._id(index))

    def fixture_failed(self, slot: int) -> None:
        self.counts["failed"] += 1  # as unittest counts it among the errors
        if self._names_failures and slot in self.running:
            self._name("ERROR", f"a class or module fixture of {self._label(slot)}")

    def reporting(self, starts: bool) -> None:
        if starts:
            self._erase()
        else:
            self._redraw()

    def tick(self, now: float) -> None:
        if self.tty and now - self.last >= REDRAW:
            self._redraw()
        elif not self.tty and now - self.last >= HEARTBEAT:
            self._write_line()

    def run_ended(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self.tty:
            self._erase()
        elif self._tally() != self._logged:
            # A unit's end may just have logged these very counts.
            self._write_line()

    @property
    def done(self) -> int:
        """Tests accounted for: reported, or in a finished unit (a failed
        setUpClass's tests are never reported)."""
        finished = {i for u in self._finished for i in self.units[u].indices}
        return len(self._reported | finished)

    # -- the line ------------------------------------------------------------

    def line(self) -> str:
        elapsed = self.clock() - self.started
        width = len(str(self.total))
        text = f"[{self.done:>{width}}/{self.total} tests | {self._counts_text()}"
        text += f" | {elapsed:.1f}s"
        left = self._left(elapsed)
        if left is not None:
            text += f", about {left:.0f}s left"
        if self.running:
            names = ", ".join(self.units[u].short_label for u in self.running.values())
            text += f" | running: {names}"
        return text + "]"

    def _tally(self) -> str:
        return f"{self.done} {self._counts_text()}"

    def _counts_text(self) -> str:
        return ", ".join(
            f"{count} {name[:-1] if count == 1 and name.endswith('failures') else name}"
            for name, count in self.counts.items()
            if count or name in ("passed", "failed")
        )

    def _left(self, elapsed: float) -> float | None:
        """Time left, from the share of the estimated work that is done."""
        total = sum(self.estimates)
        if not self.work_done or not total or self.work_done >= total:
            return None
        share = self.work_done / total
        return elapsed * (1 - share) / share

    @property
    def _names_failures(self) -> bool:
        # At -v 2 unittest names every test; at -v 1 on a terminal the dots
        # are gone, so failures are named here.
        return self.tty and self.verbosity == 1

    def _id(self, index: int) -> str:
        return self.test_ids[index] if index < len(self.test_ids) else str(index)

    def _label(self, slot: int) -> str:
        return self.units[self.running[slot]].label

    def _name(self, kind: str, what: str) -> None:
        self._erase()
        self._write(f"{kind}: {what}\n")

    def _erase(self) -> None:
        if self._shown:
            self._write("\r\x1b[K")
            self._shown = False

    def _redraw(self) -> None:
        if not self.tty or self.verbosity < 1 or self._ended:
            return
        text = self.line()[: max(20, _columns() - 1)]
        self._write(f"\r\x1b[K\x1b[2m{text}\x1b[0m")
        self._shown = True
        self.last = self.clock()

    def _write_line(self) -> None:
        if self.verbosity < 1:
            return
        self.last = self.clock()
        # At -v 1 the line ends the row of dots; at -v 2 it stands alone.
        prefix = " " if self.verbosity == 1 else ""
        self._logged = self._tally()
        sys.stdout.flush()  # keep earlier stdout lines before this one in logs
        self._write(f"{prefix}{self.line()}\n")

    def _write(self, text: str) -> None:
        # The progress line is never worth failing a run for.
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass


def outcome_of(record: p.TestRecord) -> str:
    """How the status line counts a test."""
    if record.failed:
        return "failed"
    if any(isinstance(o, p.ExpectedFailure) for o in record.outcomes):
        return "expected failures"
    if any(isinstance(o, p.Skip) for o in record.outcomes):
        return "skipped"
    return "passed"


def _columns() -> int:
    """The terminal's width. A terminal that reports 0 columns (a pseudo-
    terminal nobody sized) has 80, as Python 3.11+ says; 3.10 says 0."""
    columns = shutil.get_terminal_size().columns
    return columns if columns > 0 else 80
