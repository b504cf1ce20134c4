"""The parent's loop: hand units to workers, replay what they send back.

``GroupedParallelSuite`` is a ``unittest.TestSuite`` like Django's
``ParallelTestSuite``: any test runner can run it and one ordinary result
collects every test. Workers ask for nothing; the parent gives a unit to a
worker as soon as it is idle and the plan allows it.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import queue
import signal
import socket
import sys
import threading
import time
import unittest
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..planning.groups import Unit
from ..planning.plan import Dispatcher, Plan
from ..reports.progress import Progress
from . import protocol as p
from .replay import (
    replay_fixture,
    replay_output,
    replay_test,
    report_crash,
    report_unit_crash,
)
from .workers import WorkerProcess

if TYPE_CHECKING:  # imported only when a timeline is recorded
    from ..reports.timeline import Bar, Timeline

#: Seconds a worker may take from start to hello (imports, discovery).
STARTUP_TIMEOUT = 300.0
#: After a stop (failfast, Ctrl-C), seconds the tests in flight may finish.
STOP_GRACE = 10.0


class WorkerStartupError(ConfigurationError):
    """A worker could not get as far as running tests."""


class GroupedParallelSuite(unittest.TestSuite):
    def __init__(
        self,
        tests: Sequence[unittest.TestCase],
        units: Sequence[Unit],
        plan: Plan,
        *,
        spawn: Callable[[int, int], WorkerProcess],
        group_timeout: float | None = None,
        timeline: Timeline | None = None,
        verbosity: int = 1,
    ) -> None:
        super().__init__()
        self.tests = list(tests)
        self.units = list(units)
        self.plan = plan
        self.spawn = spawn
        self.workers: dict[int, WorkerProcess] = {}
        self.configs: dict[int, p.Configure] = {}
        self.generations: dict[int, int] = {}
        self.group_timeout = group_timeout
        self.verbosity = verbosity
        self.progress: Progress | None = None
        self.units_done = 0
        self.timeline = timeline
        self.unit_bars: dict[int, Bar] = {}  # slot -> its unit's bar
        self.startup_bars: dict[int, Bar] = {}
        self.measured: dict[str, float] = {}
        self.remaining: dict[int, list[int]] = {}
        self.interrupted: str | None = None  # the signal's name
        #: Slots whose databases are ready (their clones exist; the last
        #: slot's once every clone does): only their workers get a Configure.
        self.ready_slots: set[int] = set()
        self._slots_made: queue.SimpleQueue[int] = queue.SimpleQueue()
        # Written by the cloning threads (slot_ready), so that the loop's
        # wait wakes up for a new slot as it does for a worker's message.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self.cloning: Any = None  # databases.Cloning, for its failures

    # TestSuite protocol: the runner counts and inspects these tests.
    def __iter__(self) -> Iterator[unittest.TestCase]:
        return iter(self.tests)

    def countTestCases(self) -> int:
        return len(self.tests)

    # -- processes -------------------------------------------------------

    def start_workers(self) -> None:
        for slot in range(1, self.plan.workers + 1):
            self._start(slot)

    def _start(self, slot: int) -> WorkerProcess:
        generation = self.generations.get(slot, -1) + 1
        self.generations[slot] = generation
        asked = self.timeline.now() if self.timeline is not None else 0.0
        worker = self.spawn(slot, generation)
        self.workers[slot] = worker
        if self.timeline is not None:
            from ..reports.timeline import Bar

            self.startup_bars[slot] = self.timeline.add(
                Bar("startup", slot, f"worker {slot} starting", asked, asked)
            )
        if slot in self.configs and slot in self.ready_slots:
            worker.send(self.configs[slot])
        return worker

    def configure(self, configs: dict[int, p.Configure]) -> None:
        """What each slot's worker is sent once the slot's databases are ready."""
        self.configs = configs
        self._configure_ready_slots()

    def slot_ready(self, slot: int) -> None:
        """The slot's databases are ready; called from a cloning thread."""
        self._slots_made.put(slot)
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _configure_ready_slots(self) -> None:
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
            self.ready_slots.add(slot)
            if slot in self.workers and slot in self.configs:
                self.workers[slot].send(self.configs[slot])

    def shutdown(self) -> None:
        """Stop every worker and reap it; safe to call more than once."""
        for worker in self.workers.values():
            worker.send(p.Stop())
        deadline = time.monotonic() + STOP_GRACE
        for worker in self.workers.values():
            worker.wait(max(0.0, deadline - time.monotonic()))
            worker.terminate()
        self.workers.clear()
        self._wake_reader.close()
        self._wake_writer.close()

    # -- the loop ----------------------------------------------------------

    def run(self, result: unittest.TestResult, debug: bool = False) -> Any:
        self.remaining = {i: list(u.indices) for i, u in enumerate(self.units)}
        dispatcher = Dispatcher(self.plan)
        sys.stdout.flush()  # the plan, logged to stdout, before any result
        stream = getattr(result, "stream", None) or sys.stderr
        self.progress = Progress(stream, len(self.units), verbosity=self.verbosity)
        stopping_since: float | None = None
        with self._interruptible(result):
            try:
                while not dispatcher.done or self._busy():
                    if self.interrupted:
                        self._interrupt(result)
                        break
                    if result.shouldStop and stopping_since is None:
                        # failfast: let the tests in flight finish, briefly.
                        stopping_since = time.monotonic()
                        dispatcher.cancel()
                        for worker in self._busy():
                            worker.send(p.Stop())
                    if stopping_since is not None and (
                        not self._busy()
                        or time.monotonic() - stopping_since > STOP_GRACE
                    ):
                        break
                    self._dispatch(dispatcher, result)
                    self._pump(dispatcher, result)
            except KeyboardInterrupt:
                # A second Ctrl-C: no more grace for anyone.
                for worker in self.workers.values():
                    worker.terminate(grace=0)
                self.workers.clear()
                raise
            finally:
                self.shutdown()
        return result

    @contextlib.contextmanager
    def _interruptible(self, result: unittest.TestResult) -> Iterator[None]:
        """First Ctrl-C or SIGTERM: stop the workers now and report what
        finished. A second one raises KeyboardInterrupt at once; the
        ``finally`` blocks still reap every worker and drop the clones."""

        def handler(signum: int, frame: Any) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = signal.Signals(signum).name
            result.stop()

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _interrupt(self, result: unittest.TestResult) -> None:
        print(
            f"\nInterrupted: stopping {len(self._busy())} busy worker(s). Tests "
            f"that had finished are reported below.",
            file=sys.stderr,
            flush=True,
        )
        for worker in self.workers.values():
            worker.terminate()
        self.workers.clear()
        not_run = sum(len(indices) for indices in self.remaining.values())
        # An interrupted run must not pass (unittest would say OK).
        report_unit_crash(
            result,
            f"run interrupted by {self.interrupted}",
            f"was stopped with {not_run} test(s) not run.",
        )

    def _busy(self) -> list[WorkerProcess]:
        return [w for w in self.workers.values() if w.unit is not None]

    def _dispatch(self, dispatcher: Dispatcher, result: unittest.TestResult) -> None:
        for worker in self.workers.values():
            if (
                not worker.ready
                or worker.retiring
                or worker.unit is not None
                or worker.slot not in self.ready_slots
            ):
                continue
            unit = dispatcher.next_unit()
            if unit is None:
                return
            indices = self.remaining[unit]
            missing = [i for i in indices if i not in worker.index_map]
            for index in missing:
                report_crash(
                    result, self.tests[index], self._why_missing(worker, index)
                )
            worker.unit = unit
            worker.unit_started = time.monotonic()
            self._bar_for(worker, unit, indices, dispatcher.phase_name)
            worker.send(
                p.RunUnit(
                    unit, [worker.index_map[i] for i in indices if i not in missing]
                )
            )

    def _bar_for(
        self, worker: WorkerProcess, unit: int, indices: list[int], phase: str
    ) -> None:
        if self.timeline is None:
            return
        from ..reports.timeline import Bar

        self.timeline.enter_phase(phase)
        now = self.timeline.now()
        info = self.units[unit]
        self.unit_bars[worker.slot] = self.timeline.add(
            Bar(
                "unit",
                worker.slot,
                info.label,
                now,
                now,
                strategy=info.strategy.value,
                group=info.group,
                tests=[self.tests[i].id() for i in indices],
                outcome="passed",
                phase=phase,
            )
        )

    def _unit_bar_ends(self, worker: WorkerProcess, outcome: str | None = None) -> None:
        bar = self.unit_bars.pop(worker.slot, None)
        if bar is not None and self.timeline is not None:
            bar.end = self.timeline.now()
            if outcome is not None:
                bar.outcome = outcome

    def _unit_done(self) -> None:
        self.units_done += 1
        if self.progress is not None:
            running = [
                self.units[w.unit].short_label
                for w in self._busy()
                if w.unit is not None
            ]
            self.progress.unit_done(self.units_done, running)

    def _why_missing(self, worker: WorkerProcess, index: int) -> str:
        test_id = self.tests[index].id()
        for module, error in worker.import_errors.items():
            if test_id.startswith(module + "."):
                return (
                    f"could not run it: its module failed to import there.\n\n{error}"
                )
        return (
            "could not find this test: the worker's suite does not have it "
            "(does its module load differently in a child process?)."
        )

    def _pump(self, dispatcher: Dispatcher, result: unittest.TestResult) -> None:
        by_conn = {w.conn: w for w in self.workers.values()}
        readable = multiprocessing.connection.wait(
            [*by_conn, self._wake_reader], timeout=0.5
        )
        if self._wake_reader in readable:
            self._configure_ready_slots()
        if self.cloning is not None:
            if failed := self.cloning.failure():
                raise failed  # Django's own clone error ends the run (SystemExit)
            if self.cloning.took is not None:  # every clone made: stop asking
                self.cloning = None
        now = time.monotonic()
        for worker in list(self.workers.values()):
            exited = worker.process.poll() is not None
            if worker.conn in readable or exited:
                try:
                    # Drain first: a worker that exited may have said more.
                    while worker.conn.poll():
                        self._handle(worker, worker.conn.recv(), dispatcher, result)
                except (EOFError, OSError):
                    exited = True
            if exited:
                self._lost(worker, dispatcher, result)
            elif (
                self.group_timeout is not None
                and worker.unit is not None
                and now - worker.unit_started > self.group_timeout
            ):
                self._time_out(worker, dispatcher, result)
            elif not worker.ready and now - worker.started_at > STARTUP_TIMEOUT:
                worker.terminate()
                self._startup_failed(
                    worker, f"did not say hello within {STARTUP_TIMEOUT:.0f}s"
                )

    def _handle(
        self,
        worker: WorkerProcess,
        message: Any,
        dispatcher: Dispatcher,
        result: unittest.TestResult,
    ) -> None:
        match message:
            case p.Hello(test_ids=ids, import_errors=errors, ready_at=ready_at):
                worker.import_errors = errors
                if worker.slot in self.startup_bars and self.timeline is not None:
                    # When it was ready, not when this loop got to its hello
                    # (that waits for the databases).
                    bar = self.startup_bars.pop(worker.slot)
                    now = self.timeline.now()
                    ready = now if ready_at is None else ready_at - self.timeline.t0
                    bar.end = max(bar.start, min(now, ready))
                self._greet(worker, ids)
            case p.TestStarted(index=index):
                worker.in_flight = worker.reverse_map[index]
            case p.TestDone(unit=unit, record=record):
                index = worker.reverse_map[record.index]
                record.index = index
                worker.in_flight = None
                if index in self.remaining[unit]:
                    self.remaining[unit].remove(index)
                replay_test(result, self.tests[index], record)
                if self.progress is not None:
                    skipped = any(isinstance(o, p.Skip) for o in record.outcomes)
                    self.progress.count(failed=record.failed, skipped=skipped)
                if record.failed and worker.slot in self.unit_bars:
                    self.unit_bars[worker.slot].outcome = "failed"
            case p.UnitOutput(stdout=stdout, stderr=stderr):
                replay_output(result, stdout, stderr)
            case p.FixtureOutcome(description=description, outcome=outcome):
                replay_fixture(
                    result,
                    description,
                    outcome,
                    message.buffered_stdout,
                    message.buffered_stderr,
                )
                if isinstance(outcome, p.Error) and worker.slot in self.unit_bars:
                    self.unit_bars[worker.slot].outcome = "failed"
            case p.UnitDone(unit=unit, class_durations=durations, abandoned=False):
                self._unit_bar_ends(worker)
                self.measured.update(durations)
                self.remaining[unit] = []
                worker.unit = None
                dispatcher.finished(unit)
                self._unit_done()
            case p.UnitDone(unit=unit, retry=retry):
                # The worker is exiting; _lost starts its replacement.
                self._unit_bar_ends(worker, "crashed")
                worker.unit = None
                worker.retiring = True
                self._give_back(unit, retry, dispatcher, result)
            case _:
                raise TypeError(f"unexpected message from worker: {message!r}")

    def _greet(self, worker: WorkerProcess, ids: list[str]) -> None:
        """Map parent indices to the worker's, by test id, in order."""
        expected = [t.id() for t in self.tests]
        if ids == expected:
            worker.index_map = {i: i for i in range(len(ids))}
        else:
            positions: dict[str, list[int]] = {}
            for i, test_id in enumerate(ids):
                positions.setdefault(test_id, []).append(i)
            worker.index_map = {
                i: positions[test_id].pop(0)
                for i, test_id in enumerate(expected)
                if positions.get(test_id)
            }
        worker.reverse_map = {w: i for i, w in worker.index_map.items()}
        worker.ready = True

    def _lost(
        self,
        worker: WorkerProcess,
        dispatcher: Dispatcher,
        result: unittest.TestResult,
        how: str | None = None,
    ) -> None:
        """A worker's pipe closed: account for its unit, start a replacement."""
        if self.workers.get(worker.slot) is not worker:
            return
        # Bounded; it also takes in the fork server's late answer (a failed
        # fork closes the worker's channel right after saying so).
        how = how or worker.how_it_ended()
        if worker.never_started and not worker.ready:
            # The fork server could not fork it (its next workers are fresh
            # interpreters): nothing ran, so start the slot again.
            worker.close()
            del self.workers[worker.slot]
            if not dispatcher.done and not result.shouldStop:
                self._start(worker.slot)
            return
        worker.terminate()
        del self.workers[worker.slot]
        if not worker.ready:
            self._startup_failed(worker, how)
        unit = worker.unit
        if unit is None:
            if not dispatcher.done and not result.shouldStop:
                self._start(worker.slot)
            return
        self._unit_bar_ends(worker, "crashed")
        if worker.in_flight is not None:
            index = worker.in_flight
            if index in self.remaining[unit]:
                self.remaining[unit].remove(index)
            report_crash(result, self.tests[index], self._death_note(worker, how))
        # After a death inside a test, the rest of the unit goes to the
        # replacement (same slot, same clone). A death outside any test (a
        # class or module fixture) would most likely happen again.
        retry = worker.in_flight is not None
        self._give_back(unit, retry, dispatcher, result, how=how, worker=worker)
        if not result.shouldStop and not dispatcher.done:
            self._start(worker.slot)

    def _give_back(
        self,
        unit: int,
        retry: bool,
        dispatcher: Dispatcher,
        result: unittest.TestResult,
        *,
        how: str = "gave up on it.",
        worker: WorkerProcess | None = None,
    ) -> None:
        """A unit ended early: run the rest elsewhere, or report it not run."""
        remaining = self.remaining[unit]
        if remaining and retry and not result.shouldStop:
            dispatcher.requeue(unit)
            return
        if remaining and not retry:
            note = self._death_note(worker, how) if worker else how
            report_unit_crash(
                result,
                f"{self.units[unit].label}: {len(remaining)} test(s) not run",
                note,
            )
        remaining.clear()
        dispatcher.finished(unit)
        self._unit_done()

    def _time_out(
        self,
        worker: WorkerProcess,
        dispatcher: Dispatcher,
        result: unittest.TestResult,
    ) -> None:
        """--group-timeout: show where the worker is, end it, move on."""
        stacks = worker.dump_stacks()
        worker.terminate()
        with contextlib.suppress(EOFError, OSError):
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv(), dispatcher, result)
        how = (
            f"was stopped: its unit ran longer than --group-timeout "
            f"({self.group_timeout:g}s)"
        )
        if stacks:
            how += f". Where it was:\n\n{stacks.rstrip()}"
        self._lost(worker, dispatcher, result, how=how)

    @staticmethod
    def _death_note(worker: WorkerProcess, how: str) -> str:
        """``how`` the worker ended, as a sentence, with its last output."""
        if "Where it was:" in how:
            return how
        tail = worker.log_tail()
        return f"{how}." + (f"\n\nLast output of the worker:\n{tail}" if tail else "")

    def _startup_failed(self, worker: WorkerProcess, how: str) -> None:
        raise WorkerStartupError(
            f"Worker {worker.slot} (pid {worker.known_pid}) {how} before it could run "
            f"tests. Its output:\n\n{worker.log_tail() or '(nothing)'}"
        )
