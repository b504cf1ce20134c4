"""Ctrl-C and SIGTERM to the test process, outside the test phase.

Both unwind as KeyboardInterrupt, so every ``finally`` runs: workers are
reaped, clones dropped, the run directory removed. (While the tests run,
``orchestra`` handles them itself, to report what finished; in one process,
unittest's handler stops the run gently, as under DiscoverRunner.)

A KeyboardInterrupt raised by a signal handler while a ``__del__`` or a
weakref callback runs is only printed, as "Exception ignored in ...", and
is then lost: Django 6's ``ModelState.__del__`` runs often enough during
the migrations for a Ctrl-C to vanish there. So the handler also records
the signal, and :meth:`Interrupts.check`, called where the run goes on to
its next step, raises it again.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    def __init__(self) -> None:
        #: The name of the first signal received ("SIGTERM"), or None.
        self.received: str | None = None
        self._handling: set[int] = set()
        #: A cleanup has deferred a signal: the next one raises at once, also
        #: in a later cleanup of the same run (a failed setup has two).
        self._deferred_one = False

    @contextlib.contextmanager
    def handled(self) -> Iterator[None]:
        """Handle the signals for the block (in the main thread only, where
        Python runs handlers); a signal that was swallowed is raised again
        when the block ends, if nothing checked it before."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # A signal the process was started to ignore (nohup, a background
        # job) stays ignored, as Python leaves an ignored SIGINT.
        previous = {
            sig: signal.signal(sig, self._handle)
            for sig in SIGNALS
            if signal.getsignal(sig) != signal.SIG_IGN
        }
        self._handling = set(previous)
        try:
            yield
        finally:
            self._handling = set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.check()

    @contextlib.contextmanager
    def ctrl_c_raises(self) -> Iterator[None]:
        """The first Ctrl-C raises at once within the block.

        For the test databases' setup: DiscoverRunner.setup_test_environment
        gives SIGINT to unittest's handler, which stops a run gently once
        its tests have started but, before that, ignores a first Ctrl-C.
        """
        if signal.SIGINT not in self._handling:
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def gently(self, on_first: Callable[[str], None]) -> Iterator[None]:
        """For the tests of a parallel run: the first SIGINT or SIGTERM
        calls ``on_first(name)`` (the loop ends the workers and reports what
        finished); a second one raises KeyboardInterrupt at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def first_then_raise(signum: int, frame: Any) -> None:
            if self.received is not None:
                raise KeyboardInterrupt
            self.received = signal.Signals(signum).name
            on_first(self.received)

        previous = {sig: signal.signal(sig, first_then_raise) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def deferred(self, note: str) -> Iterator[None]:
        """For a cleanup that must not stop half way: within the block the
        first SIGINT or SIGTERM prints ``note`` and is raised only when
        :meth:`handled` ends; a second one raises at once."""
        if not self._handling:
            yield
            return

        def defer(signum: int, frame: Any) -> None:
            if self._deferred_one:
                raise KeyboardInterrupt
            self._deferred_one = True
            if self.received is None:
                self.received = signal.Signals(signum).name
            # A signal handler may interrupt a write to stderr.
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                print(note, file=sys.stderr, flush=True)

        previous = {sig: signal.signal(sig, defer) for sig in self._handling}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """unittest's Ctrl-C handler tells its registered results to stop
        (``unittest.registerResult``): it stops the tests gently, and this
        makes the run end as interrupted once they have."""
        if self.received is None:
            self.received = "SIGINT"

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal came: reaching this point
        means its first KeyboardInterrupt was swallowed on the way."""
        if self.received is not None:
            raise KeyboardInterrupt(f"{self.received} received")
