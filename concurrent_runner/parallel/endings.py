"""How a worker ended, as data, and the one place it is put into words.

The parent loop learns it from the process (exit code or signal), from its
own timers (``--group-timeout``, start-up) or from the fork server, and
hands it on; only ``WorkerEnding.report`` formats it, where it is shown.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass


class EndKind(enum.Enum):
    EXITED = "exited"
    SIGNALLED = "signalled"
    #: It did not exit when it should have (nor within the grace after SIGTERM).
    UNRESPONSIVE = "unresponsive"
    #: Ended by the parent: its unit ran longer than --group-timeout.
    TIMED_OUT = "timed out"
    #: Ended by the parent: it did not say hello within STARTUP_TIMEOUT.
    SILENT = "silent"
    #: There was never a process: the fork server could not fork it.
    FORK_FAILED = "fork failed"


@dataclass(frozen=True)
class WorkerEnding:
    kind: EndKind
    #: The exit code (EXITED) or the signal's number (SIGNALLED).
    code: int | None = None
    #: The limit it ran into (TIMED_OUT, SILENT), in seconds.
    limit: float | None = None
    #: Where its threads were (faulthandler), when the parent asked.
    stacks: str = ""
    #: The end of its own output (its log), for a crash.
    log_tail: str = ""
    #: The fork server's error (FORK_FAILED).
    error: str = ""

    @classmethod
    def from_returncode(cls, code: int | None, *, log_tail: str = "") -> WorkerEnding:
        """From ``Popen.returncode``: None (still running), negative for a
        signal."""
        if code is None:
            return cls(EndKind.UNRESPONSIVE, log_tail=log_tail)
        if code < 0:
            return cls(EndKind.SIGNALLED, -code, log_tail=log_tail)
        return cls(EndKind.EXITED, code, log_tail=log_tail)

    def sentence(self) -> str:
        """What happened, to follow "The worker running X ..."."""
        match self.kind:
            case EndKind.EXITED:
                return f"exited with code {self.code}"
            case EndKind.SIGNALLED:
                return f"was killed by {signal_name(self.code or 0)}"
            case EndKind.UNRESPONSIVE:
                return "stopped answering"
            case EndKind.TIMED_OUT:
                return (
                    f"was stopped: its unit ran longer than --group-timeout "
                    f"({self.limit:g}s)"
                )
            case EndKind.SILENT:
                return f"did not say hello within {self.limit:g}s"
            case EndKind.FORK_FAILED:
                return f"could not be forked ({self.error})"

    def report(self) -> str:
        """The sentence, then where the worker was or what it printed last."""
        text = f"{self.sentence()}."
        if self.stacks:
            return f"{text} Where it was:\n\n{self.stacks.rstrip()}"
        if self.log_tail:
            return f"{text}\n\nLast output of the worker:\n{self.log_tail}"
        return text


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
