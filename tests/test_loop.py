"""concurrent_runner.parallel.loop, in-process: the I/O loop with workers
that are threads on real pipes, so every wait and message is real but no
process is started."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import unittest
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.controller import RunController, TestInfo
from concurrent_runner.parallel.endings import EndKind
from concurrent_runner.parallel.loop import (
    GroupedParallelSuite,
    ResultReport,
    WorkerPool,
)
from concurrent_runner.planning.groups import build_units, class_label
from concurrent_runner.planning.plan import make_plan

BOUND = 15.0


class ThreadProcess:
    """A worker's 'process': a thread; ``code`` is its exit code once done."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.pid = 0
        self.code: int | None = None

    def poll(self) -> int | None:
        return None if self.thread.is_alive() else self.code

    def wait(self, timeout: float | None = None) -> int:
        self.thread.join(timeout)
        return self.poll() or 0


class ThreadWorker:
    """Looks like a WorkerProcess to the loop; plays a worker in a thread:
    runs each test of a unit by sending its record, unless ``script``
    says what to do instead at that test (``"die"``, ``"fail"``)."""

    def __init__(self, slot: int, ids: list[str], script: dict[str, str]) -> None:
        self.slot = slot
        self.conn, self._child = Pipe()
        self.started_at = 0.0
        self.log_path = Path("/nonexistent")
        self._ids = ids
        self._script = script
        self.process = ThreadProcess(threading.Thread(target=self._serve, daemon=True))
        self.process.thread.start()

    known_pid = None
    never_started = False

    def _serve(self) -> None:
        conn = self._child
        self.process.code = 1  # unless it ends as it should
        try:
            conn.send(p.Hello(0, self._ids))
            conn.recv()  # Configure
            while True:
                message = conn.recv()
                if not isinstance(message, p.RunUnit):
                    break
                if not self._run(conn, message):
                    return
        except (EOFError, OSError):
            pass
        self.process.code = 0
        conn.close()

    def _run(self, conn: Connection, message: p.RunUnit) -> bool:
        for index in message.indices:
            if index in message.fixtures_only + message.module_fixtures_only:
                continue  # as a worker does: its fixtures only, nothing to say
            conn.send(p.TestStarted(message.unit, index))
            what = self._script.get(self._ids[index])
            if what == "die":
                self.process.code = 3
                conn.close()
                return False
            if what == "hang":  # until the loop gives up on it
                with contextlib.suppress(EOFError, OSError):
                    conn.recv()
                return False
            if what == "interrupt":  # a Ctrl-C at the terminal, meanwhile
                os.kill(os.getpid(), signal.SIGINT)
                with contextlib.suppress(EOFError, OSError):
                    conn.recv()
                return False
            if what == "abandon":
                conn.send(p.UnitDone(message.unit, {}, abandoned=True, retry=True))
                self.process.code = 0
                return False
            if what == "fixture":
                conn.send(p.FixtureStarted(message.unit, "setUpClass", "fake.mod.Big"))
                error = ValueError("in setUpClass")
                conn.send(
                    p.FixtureOutcome(
                        message.unit,
                        "setUpClass (fake.mod.Big)",
                        p.Error((ValueError, error, None)),
                    )
                )
                continue
            outcome: Any = p.Success()
            if what == "fail":
                error = AssertionError("scripted")
                outcome = p.Failure((AssertionError, error, None))
            conn.send(p.TestDone(message.unit, p.TestRecord(index, [outcome])))
        conn.send(p.UnitDone(message.unit, {}))
        return True

    def send(self, message: Any) -> bool:
        try:
            self.conn.send(message)
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.conn.close()

    def log_tail(self) -> str:
        return ""

    def dump_stacks(self) -> str:
        return ""

    def ending(self) -> Any:
        from concurrent_runner.parallel.endings import WorkerEnding

        self.process.thread.join(BOUND)
        return WorkerEnding.from_returncode(self.process.code)


def make_tests() -> list[unittest.TestCase]:
    def cls(name: str, n: int) -> type:
        attrs = {f"test_{i}": lambda self: None for i in range(n)}
        return type(name, (unittest.TestCase,), {"__module__": "fake.mod", **attrs})

    big, small = cls("Big", 3), cls("Small", 2)
    return [big(f"test_{i}") for i in range(3)] + [small(f"test_{i}") for i in range(2)]


def run_suite(
    script: dict[str, str] | None = None,
    workers: int = 2,
    failfast: bool = False,
    group_timeout: float | None = None,
    cloning: Any = None,
) -> tuple[unittest.TestResult, GroupedParallelSuite, list[ThreadWorker]]:
    tests = make_tests()
    ids = [t.id() for t in tests]
    units = build_units(tests)
    estimates = [float(len(u.indices)) for u in units]
    started: list[ThreadWorker] = []

    def spawn(slot: int, generation: int) -> ThreadWorker:
        worker = ThreadWorker(slot, ids, (script or {}) if generation == 0 else {})
        started.append(worker)
        return worker

    pool = WorkerPool(spawn)  # type: ignore[arg-type]
    infos = [TestInfo(t.id(), class_label(t), type(t).__module__) for t in tests]
    plan = make_plan(units, estimates, workers)
    controller = RunController(
        infos, units, plan, estimates, workers=pool, group_timeout=group_timeout
    )
    suite = GroupedParallelSuite(tests, controller, pool)
    suite.cloning = cloning
    controller.start()
    controller.configure({s: p.Configure({}, {}, False) for s in controller.slots})
    for slot in controller.slots:
        suite.slot_ready(slot)
    result = unittest.TextTestResult(
        unittest.runner._WritelnDecorator(io.StringIO()),  # type: ignore[attr-defined]
        True,
        0,
    )
    result.failfast = failfast
    suite.run(result)
    return result, suite, started


class LoopTests(unittest.TestCase):
    def test_every_test_is_replayed_once(self) -> None:
        result, suite, started = run_suite()
        self.assertEqual(result.testsRun, 5)
        self.assertTrue(result.wasSuccessful())
        self.assertTrue(suite.controller.finished)
        self.assertEqual(len(started), 2)
        self.assertEqual(suite.pool.workers, {})  # all ended and forgotten

    def test_a_worker_that_dies_costs_its_test_and_is_replaced(self) -> None:
        result, _suite, started = run_suite({"fake.mod.Big.test_1": "die"})
        self.assertEqual(result.testsRun, 5)
        [(test, text)] = result.errors
        self.assertEqual(test.id(), "fake.mod.Big.test_1")
        self.assertIn("The worker running fake.mod.Big.test_1 exited with code 3", text)
        self.assertEqual(len(started), 3)  # a replacement ran test_2

    def test_failfast_replays_nothing_after_the_first_failure(self) -> None:
        result, suite, _ = run_suite(
            {"fake.mod.Big.test_0": "fail"}, workers=1, failfast=True
        )
        self.assertEqual(result.testsRun, 1)
        self.assertEqual(len(result.failures), 1)
        self.assertIsNotNone(suite.controller.stopped_at)

    def test_the_ending_of_a_thread_worker(self) -> None:
        worker = ThreadWorker(1, [], {})
        worker.close()
        self.assertIs(worker.ending().kind, EndKind.EXITED)

    def test_a_unit_over_its_time_is_ended_and_reported(self) -> None:
        result, _suite, started = run_suite(
            {"fake.mod.Small.test_0": "hang"}, group_timeout=0.5
        )
        [(test, text)] = result.errors
        self.assertEqual(test.id(), "fake.mod.Small.test_0")
        self.assertIn("ran longer than --group-timeout (0.5s)", text)
        self.assertEqual(result.testsRun, 5)  # test_1 ran on a replacement
        self.assertEqual(len(started), 3)

    def test_a_ctrl_c_reports_the_test_in_flight_and_ends_the_run(self) -> None:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            result, suite, _ = run_suite({"fake.mod.Big.test_0": "interrupt"})
        self.assertEqual(suite.controller.interrupted, "SIGINT")
        self.assertIn("fake.mod.Big.test_0", stderr.getvalue())
        self.assertIn("fake.mod.Big.test_0", [t.id() for t, _ in result.errors])
        self.assertTrue(result.shouldStop)

    def test_a_unit_given_up_by_its_worker_goes_to_a_new_one(self) -> None:
        result, _suite, started = run_suite({"fake.mod.Big.test_1": "abandon"})
        self.assertEqual(len(started), 3)
        # test_1 sent no record before giving up: the new worker runs it.
        self.assertEqual(result.testsRun, 5)

    def test_a_fixture_error_is_replayed_as_unittest_does(self) -> None:
        result, _suite, _ = run_suite({"fake.mod.Big.test_0": "fixture"})
        [(holder, text)] = result.errors
        self.assertEqual(str(holder), "setUpClass (fake.mod.Big)")
        self.assertIn("ValueError: in setUpClass", text)

    def test_a_failed_clone_ends_the_run_with_its_error(self) -> None:
        class FailedCloning:
            took = None

            def failure(self) -> BaseException:
                return SystemExit("the clone failed")

        with self.assertRaisesRegex(SystemExit, "the clone failed"):
            run_suite(cloning=FailedCloning())


def text_result() -> unittest.TextTestResult:
    return unittest.TextTestResult(
        unittest.runner._WritelnDecorator(io.StringIO()),  # type: ignore[attr-defined]
        True,
        1,
    )


class ResultReportTests(unittest.TestCase):
    def test_what_a_unit_wrote_outside_its_tests_is_shown(self) -> None:
        result = text_result()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            ResultReport(result, make_tests()).output(b"setUpClass\n", b"on fd 2\n")
        self.assertEqual(
            (out.getvalue(), err.getvalue()), ("setUpClass\n", "on fd 2\n")
        )
        self.assertTrue(result.wasSuccessful())

    def test_a_fixture_error_keeps_what_the_buffer_held(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            result = text_result()
            result.buffer = True
            ResultReport(result, make_tests()).fixture(
                p.FixtureOutcome(
                    0,
                    "setUpClass (fake.mod.Big)",
                    p.Error((RuntimeError, RuntimeError("no"), None)),
                    buffered_stdout="in setUpClass\n",
                )
            )
        [(_holder, text)] = result.errors
        self.assertIn("Stdout:\nin setUpClass", text)
