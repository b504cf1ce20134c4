"""The parent's loop: hand units to workers, replay what they send back.

``GroupedParallelSuite`` is a ``unittest.TestSuite`` like Django's
``ParallelTestSuite``: any test runner can run it and one ordinary result
collects every test. Workers ask for nothing; the parent gives a unit to a
worker as soon as it is idle and the plan allows it.
"""

from __future__ import annotations

import multiprocessing.connection
import time
import unittest
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import protocol as p
from .errors import ConfigurationError
from .groups import Unit
from .planning import Dispatcher, Plan
from .pool import WorkerProcess
from .replay import replay_fixture, replay_test, report_crash, report_unit_crash

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
        log: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.tests = list(tests)
        self.units = list(units)
        self.plan = plan
        self.spawn = spawn
        self.log = log
        self.workers: dict[int, WorkerProcess] = {}
        self.configs: dict[int, p.Configure] = {}
        self.generations: dict[int, int] = {}
        self.measured: dict[str, float] = {}
        self.remaining: dict[int, list[int]] = {}

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
        worker = self.spawn(slot, generation)
        self.workers[slot] = worker
        if slot in self.configs:
            worker.send(self.configs[slot])
        return worker

    def configure(self, configs: dict[int, p.Configure]) -> None:
        self.configs = configs
        for slot, worker in self.workers.items():
            worker.send(configs[slot])

    def shutdown(self) -> None:
        """Stop every worker and reap it; safe to call more than once."""
        for worker in self.workers.values():
            worker.send(p.Stop())
        deadline = time.monotonic() + STOP_GRACE
        for worker in self.workers.values():
            worker.wait(max(0.0, deadline - time.monotonic()))
            worker.terminate()
        self.workers.clear()

    # -- the loop ----------------------------------------------------------

    def run(self, result: unittest.TestResult, debug: bool = False) -> Any:
        self.remaining = {i: list(u.indices) for i, u in enumerate(self.units)}
        dispatcher = Dispatcher(self.plan)
        stopping_since: float | None = None
        try:
            while not dispatcher.done or self._busy():
                if result.shouldStop and stopping_since is None:
                    stopping_since = time.monotonic()
                    dispatcher.cancel()
                    for worker in self._busy():
                        worker.send(p.Stop())
                if stopping_since is not None and (
                    not self._busy() or time.monotonic() - stopping_since > STOP_GRACE
                ):
                    break
                self._dispatch(dispatcher, result)
                self._pump(dispatcher, result)
        finally:
            self.shutdown()
        return result

    def _busy(self) -> list[WorkerProcess]:
        return [w for w in self.workers.values() if w.unit is not None]

    def _dispatch(self, dispatcher: Dispatcher, result: unittest.TestResult) -> None:
        for worker in self.workers.values():
            if not worker.ready or worker.unit is not None:
                continue
            unit = dispatcher.next_unit()
            if unit is None:
                return
            indices = self.remaining[unit]
            missing = [i for i in indices if i not in worker.index_map]
            for index in missing:
                report_crash(
                    result,
                    self.tests[index],
                    "could not find this test (it is not in the worker's suite;"
                    " does its module import differently there?)",
                )
            worker.unit = unit
            worker.send(
                p.RunUnit(
                    unit, [worker.index_map[i] for i in indices if i not in missing]
                )
            )

    def _pump(self, dispatcher: Dispatcher, result: unittest.TestResult) -> None:
        by_conn = {w.conn: w for w in self.workers.values()}
        readable = multiprocessing.connection.wait(list(by_conn), timeout=0.5)
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
            case p.Hello(test_ids=ids):
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
            case p.FixtureOutcome(description=description, outcome=outcome):
                replay_fixture(result, description, outcome)
            case p.UnitDone(unit=unit, class_durations=durations):
                self.measured.update(durations)
                self.remaining[unit] = []
                worker.unit = None
                dispatcher.finished(unit)
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
            for i, test_id in enumerate(expected):
                if positions.get(test_id):
                    worker.index_map[i] = positions[test_id].pop(0)
        worker.reverse_map = {w: i for i, w in worker.index_map.items()}
        worker.ready = True

    def _lost(
        self,
        worker: WorkerProcess,
        dispatcher: Dispatcher,
        result: unittest.TestResult,
    ) -> None:
        """A worker's pipe closed: account for its unit, start a replacement."""
        if self.workers.get(worker.slot) is not worker:
            return
        how = worker.how_it_ended()
        worker.terminate()
        del self.workers[worker.slot]
        if not worker.ready:
            self._startup_failed(worker, how)
        unit = worker.unit
        if unit is None:
            if not dispatcher.done and not result.shouldStop:
                self._start(worker.slot)
            return
        unit_label = self.units[unit].label
        remaining = self.remaining[unit]
        if worker.in_flight is not None:
            index = worker.in_flight
            if index in remaining:
                remaining.remove(index)
            report_crash(result, self.tests[index], self._death_note(worker, how))
            # The rest of the unit goes to the replacement, on the same clone.
            if remaining and not result.shouldStop:
                dispatcher.requeue(unit)
            else:
                dispatcher.finished(unit)
        else:
            # Died outside any test (a class or module fixture): running the
            # unit again would most likely die the same way.
            if remaining:
                report_unit_crash(
                    result,
                    f"{unit_label}: {len(remaining)} test(s) not run",
                    self._death_note(worker, how),
                )
            remaining.clear()
            dispatcher.finished(unit)
        if not result.shouldStop and not dispatcher.done:
            self._start(worker.slot)

    @staticmethod
    def _death_note(worker: WorkerProcess, how: str) -> str:
        tail = worker.log_tail()
        return f"{how}" + (f"\n\nLast output of the worker:\n{tail}" if tail else "")

    def _startup_failed(self, worker: WorkerProcess, how: str) -> None:
        raise WorkerStartupError(
            f"Worker {worker.slot} (pid {worker.pid}) {how} before it could run "
            f"tests. Its output:\n\n{worker.log_tail() or '(nothing)'}"
        )
