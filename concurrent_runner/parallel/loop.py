"""The parent's I/O loop: read the workers' pipes, watch their processes,
and feed what happens to the run controller (``controller``).

``GroupedParallelSuite`` is a ``unittest.TestSuite`` like Django's
``ParallelTestSuite``: any test runner can run it, and one ordinary result
collects every test. Its ``run`` is the loop; the decisions are the
controller's, and what the controller reports goes into the result through
``ResultReport`` (replay). Only the channel's own errors count as a
worker's death: an error while writing a test's output or replaying it is
the parent's, and is raised as such.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import queue
import socket
import sys
import time
import unittest
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import protocol as p
from .controller import RunController, RunListener
from .endings import EndKind, WorkerEnding
from .interrupts import Interrupts
from .processes import STARTUP_TIMEOUT, STOP_GRACE, TERMINATE_GRACE
from .replay import (
    replay_error,
    replay_fixture,
    replay_fixture_error,
    replay_output,
    replay_test,
)
from .workers import WorkerProcess, end_workers

#: Longest wait for a message before the loop looks at timers and processes.
POLL_INTERVAL = 0.5


class WorkerPool:
    """The worker processes of a run, by slot: the controller's
    ``WorkerControl``."""

    def __init__(self, spawn: Callable[[int, int], WorkerProcess]) -> None:
        self._spawn = spawn
        self.workers: dict[int, WorkerProcess] = {}

    def start(self, slot: int, generation: int) -> None:
        self.workers[slot] = self._spawn(slot, generation)

    def send(self, slot: int, message: object) -> None:
        worker = self.workers.get(slot)
        if worker is not None:
            worker.send(message)

    def forget(self, slot: int) -> WorkerProcess | None:
        return self.workers.pop(slot, None)

    def end_all(self, *, patience: float = 0.0, grace: float = TERMINATE_GRACE) -> None:
        """Ask every worker to stop, give them ``patience`` seconds to, end
        what is left; safe to call more than once, also after a second
        Ctrl-C cut the first call short (those it did not end are still
        here)."""
        workers = list(self.workers.values())
        if patience:
            for worker in workers:
                worker.send(p.Stop())
        end_workers(workers, patience=patience, grace=grace)
        for slot, worker in list(self.workers.items()):
            if worker in workers:
                del self.workers[slot]


class ResultReport:
    """The controller's ``RunReport``: replays into a unittest result."""

    def __init__(self, result: unittest.TestResult, tests: Sequence[Any]) -> None:
        self.result = result
        self.tests = tests

    def test(self, index: int, record: p.TestRecord) -> None:
        replay_test(self.result, self.tests[index], record)

    def fixture(self, message: p.FixtureOutcome) -> None:
        replay_fixture(
            self.result,
            message.description,
            message.outcome,
            message.buffered_stdout,
            message.buffered_stderr,
        )

    def output(self, stdout: bytes, stderr: bytes) -> None:
        replay_output(self.result, stdout, stderr)

    def test_error(self, index: int, error: Exception) -> None:
        replay_error(self.result, self.tests[index], error)

    def fixture_error(self, description: str, error: Exception) -> None:
        replay_fixture_error(self.result, description, error)

    @property
    def should_stop(self) -> bool:
        return self.result.shouldStop


class GroupedParallelSuite(unittest.TestSuite):
    def __init__(
        self,
        tests: Sequence[unittest.TestCase],
        controller: RunController,
        pool: WorkerPool,
        *,
        interrupts: Interrupts | None = None,
        listeners_for: Callable[[unittest.TestResult], list[RunListener]] = (
            lambda result: []
        ),
    ) -> None:
        super().__init__()
        self.tests = list(tests)
        self.controller = controller
        self.pool = pool
        self.interrupts = interrupts or Interrupts()
        #: Listeners that need the result (progress lines on its stream).
        self.listeners_for = listeners_for
        #: Slots whose databases were made, put by the cloning threads.
        self._slots_made: queue.SimpleQueue[int] = queue.SimpleQueue()
        # Written by the cloning threads (slot_ready), so that the loop's
        # wait wakes up for a new slot as it does for a worker's message.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self.cloning: Any = None  # databases.clones.Cloning, for its failures
        self._signal: str | None = None  # the first Ctrl-C or SIGTERM's name

    # TestSuite protocol: the runner counts and inspects these tests.
    def __iter__(self) -> Iterator[unittest.TestCase]:
        return iter(self.tests)

    def countTestCases(self) -> int:
        return len(self.tests)

    # -- from the session ----------------------------------------------------

    def slot_ready(self, slot: int) -> None:
        """The slot's databases are ready; called from a cloning thread."""
        self._slots_made.put(slot)
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def shutdown(self) -> None:
        """Stop every worker and reap it; safe to call more than once."""
        self.pool.end_all(patience=STOP_GRACE)
        self._wake_reader.close()
        self._wake_writer.close()

    # -- the loop ----------------------------------------------------------

    def run(self, result: unittest.TestResult, debug: bool = False) -> Any:
        controller = self.controller
        controller.report = ResultReport(result, self.tests)
        controller.listeners.extend(self.listeners_for(result))
        sys.stdout.flush()  # the plan, logged to stdout, before any result
        with self._interruptible(result):
            try:
                self._take_slots_made()
                controller.dispatch()
                while not controller.finished:
                    if self._signal:
                        self._interrupt()
                        break
                    stopped = controller.stopped_at
                    if stopped is not None and time.monotonic() - stopped > STOP_GRACE:
                        break
                    self._pump()
                    controller.dispatch()
                    controller.tick(time.monotonic())
            except KeyboardInterrupt:
                # A second Ctrl-C: no more grace for anyone.
                self.pool.end_all(grace=0.0)
                raise
            finally:
                controller.run_ended()
                self.shutdown()
        return result

    @property
    def interrupted(self) -> str | None:
        return self.controller.interrupted

    def _interruptible(self, result: unittest.TestResult) -> Any:
        """First Ctrl-C or SIGTERM: stop the workers now and report what
        finished. A second one raises KeyboardInterrupt at once; the
        ``finally`` blocks still reap every worker and drop the clones."""

        def first(name: str) -> None:
            self._signal = name
            result.stop()

        return self.interrupts.gently(first)

    def _interrupt(self) -> None:
        signal_name = self._signal or "SIGINT"
        # What the workers said before the signal counts (a test that has
        # started, or finished).
        for slot, worker in list(self.pool.workers.items()):
            messages, _broken = _receive(worker)
            for message in messages:
                self._handle(slot, message)
        running = self.controller.interrupt(signal_name)
        self.controller.run_ended()  # a status line makes way for good
        lines = [f"\nInterrupted by {signal_name}."]
        if running:
            lines.append("These tests were running (reported as errors):")
            lines += [f"  {test_id}" for test_id in running]
        not_run = self.controller.not_run()
        if not_run:
            lines.append(f"{not_run} selected test(s) did not run.")
        lines.append("Stopping the workers (a second Ctrl-C stops them at once).")
        with contextlib.suppress(OSError, ValueError):
            print("\n".join(lines), file=sys.stderr, flush=True)
        self.pool.end_all()

    def _take_slots_made(self) -> None:
        # The wake-up bytes first, then the queue: a slot put after the
        # queue is empty leaves its byte to wake the next wait.
        with contextlib.suppress(OSError):
            while self._wake_reader.recv(4096):
                pass
        while True:
            try:
                slot = self._slots_made.get_nowait()
            except queue.Empty:
                break
            self.controller.databases_ready(slot)

    def _pump(self) -> None:
        pool, controller = self.pool, self.controller
        readable = multiprocessing.connection.wait(
            [*(w.conn for w in pool.workers.values()), self._wake_reader],
            timeout=POLL_INTERVAL,
        )
        if self._wake_reader in readable:
            self._take_slots_made()
        self._check_cloning()
        for slot, worker in list(pool.workers.items()):
            exited = worker.process.poll() is not None
            if worker.conn in readable or exited:
                # Drain first: a worker that exited may have said more.
                messages, broken = _receive(worker)
                for message in messages:
                    self._handle(slot, message)
                exited = exited or broken
            if exited and pool.workers.get(slot) is worker:
                pool.forget(slot)
                controller.worker_lost(slot, worker.ending())
        now = time.monotonic()
        for slot in controller.overdue(now):
            self._end_overdue(slot)
        for slot in controller.silent(now, STARTUP_TIMEOUT):
            if (silent := pool.forget(slot)) is not None:
                end_workers([silent])
            controller.worker_lost(
                slot, WorkerEnding(EndKind.SILENT, limit=STARTUP_TIMEOUT)
            )

    def _check_cloning(self) -> None:
        if self.cloning is None:
            return
        if failed := self.cloning.failure():
            raise failed  # Django's own clone error ends the run (SystemExit)
        if self.cloning.took is not None:  # every clone made: stop asking
            self.cloning = None

    def _end_overdue(self, slot: int) -> None:
        """--group-timeout: show where the worker is, end it, move on."""
        worker = self.pool.forget(slot)
        if worker is None:
            return
        stacks = worker.dump_stacks()
        end_workers([worker], close=False)
        messages, _broken = _receive(worker)
        worker.close()
        for message in messages:
            self._handle(slot, message)
        self.controller.worker_lost(
            slot,
            WorkerEnding(
                EndKind.TIMED_OUT,
                limit=self.controller.group_timeout,
                stacks=stacks,
                log_tail=worker.log_tail(),
            ),
        )

    def _handle(self, slot: int, message: Any) -> None:
        controller = self.controller
        match message:
            case p.Hello(test_ids=ids, import_errors=errors, ready_at=ready_at):
                controller.worker_ready(slot, ids, errors, ready_at)
            case p.TestStarted(index=index):
                controller.test_started(slot, index)
            case p.FixtureStarted():
                controller.fixture_started(slot, message)
            case p.TestDone(record=record):
                controller.test_done(slot, record)
            case p.FixtureOutcome():
                controller.fixture_outcome(slot, message)
            case p.UnitOutput(stdout=stdout, stderr=stderr):
                controller.unit_output(slot, stdout, stderr)
            case p.UnitDone(unit=unit, abandoned=True, retry=retry):
                controller.unit_abandoned(slot, unit, retry)
            case p.UnitDone(
                unit=unit,
                class_durations=durations,
                flushed=flushed,
                test_durations=tests,
            ):
                controller.unit_done(slot, unit, durations, flushed, tests)
            case _:
                raise TypeError(f"unexpected message from worker: {message!r}")


def _receive(worker: WorkerProcess) -> tuple[list[Any], bool]:
    """What the worker has sent, and whether its channel broke. Only the
    channel's errors are caught here: what the messages lead to happens
    outside, where an error is the parent's own."""
    messages = []
    try:
        while worker.conn.poll():
            messages.append(worker.conn.recv())
    except (EOFError, OSError):
        return messages, True
    return messages, False
