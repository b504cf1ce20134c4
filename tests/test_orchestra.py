"""concurrent_runner.parallel.loop without processes: fake workers record what
they are sent, and messages are handed to the suite directly."""

from __future__ import annotations

import contextlib
import io
import unittest
from typing import Any

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.loop import GroupedParallelSuite
from concurrent_runner.planning.groups import build_units
from concurrent_runner.planning.plan import Dispatcher, make_plan


class FakeWorker:
    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.sent: list[Any] = []
        self.ready = True
        self.retiring = False
        self.unit: int | None = None
        self.unit_started = 0.0
        self.in_flight: int | None = None
        self.index_map: dict[int, int] = {}
        self.reverse_map: dict[int, int] = {}
        self.import_errors: dict[str, str] = {}
        self.never_started = False
        self.fork_fails = False  # known only once how_it_ended() has waited
        self.closed = False

    def send(self, message: Any) -> bool:
        self.sent.append(message)
        return True

    def close(self) -> None:
        self.closed = True

    def terminate(self) -> None:
        self.closed = True

    def log_tail(self) -> str:
        return ""

    def how_it_ended(self) -> str:
        # As the real one does, after the wait that takes in the fork
        # server's late answer.
        if self.fork_fails:
            self.never_started = True
        return "exited with code 255"


def make_tests() -> list[unittest.TestCase]:
    def cls(name: str, n: int) -> type:
        attrs = {f"test_{i}": lambda self: None for i in range(n)}
        return type(name, (unittest.TestCase,), {"__module__": "fake.mod", **attrs})

    big, small = cls("Big", 3), cls("Small", 1)
    return [big(f"test_{i}") for i in range(3)] + [small("test_0")]


def make_suite(
    workers: int = 2, cloned: bool = True
) -> tuple[GroupedParallelSuite, Dispatcher]:
    """Greeted fake workers; ``cloned``: their slots' clones exist."""
    tests = make_tests()
    units = build_units(tests)
    plan = make_plan(units, [len(u.indices) for u in units], workers)
    suite = GroupedParallelSuite(tests, units, plan, spawn=None)  # type: ignore[arg-type]
    suite.remaining = {i: list(u.indices) for i, u in enumerate(units)}
    for slot in range(1, workers + 1):
        worker = FakeWorker(slot)
        suite.workers[slot] = worker  # type: ignore[assignment]
        suite._greet(worker, [t.id() for t in tests])  # type: ignore[arg-type]
        if cloned:
            suite.ready_slots.add(slot)
    return suite, Dispatcher(plan)


def text_result() -> unittest.TextTestResult:
    return unittest.TextTestResult(
        unittest.runner._WritelnDecorator(io.StringIO()),  # type: ignore[attr-defined]
        True,
        1,
    )


class DispatchTests(unittest.TestCase):
    def test_each_ready_worker_gets_a_unit_longest_first(self) -> None:
        suite, dispatcher = make_suite()
        suite._dispatch(dispatcher, text_result())
        sent = [w.sent for w in suite.workers.values()]
        self.assertEqual(sent[0], [p.RunUnit(0, [0, 1, 2])])
        self.assertEqual(sent[1], [p.RunUnit(1, [3])])

    def test_a_worker_waits_for_its_clone_then_gets_its_configure_first(
        self,
    ) -> None:
        suite, dispatcher = make_suite(cloned=False)
        configs = {slot: p.Configure({}, {}, False) for slot in (1, 2)}
        suite.configure(configs)
        suite._dispatch(dispatcher, text_result())
        self.assertEqual([w.sent for w in suite.workers.values()], [[], []])
        suite.slot_ready(2)  # as a cloning thread does
        suite._configure_ready_slots()
        suite._dispatch(dispatcher, text_result())
        self.assertEqual(suite.workers[1].sent, [])
        self.assertEqual(suite.workers[2].sent, [configs[2], p.RunUnit(0, [0, 1, 2])])

    def test_a_retiring_or_silent_worker_gets_nothing(self) -> None:
        suite, dispatcher = make_suite()
        suite.workers[1].retiring = True
        suite.workers[2].ready = False
        suite._dispatch(dispatcher, text_result())
        self.assertEqual([w.sent for w in suite.workers.values()], [[], []])

    def test_abandoned_unit_with_retry_is_requeued_not_to_its_worker(self) -> None:
        suite, dispatcher = make_suite(workers=1)
        result = text_result()
        worker = suite.workers[1]
        suite._dispatch(dispatcher, result)
        test = suite.tests[0]
        record = p.TestRecord(
            0, [p.Error((KeyboardInterrupt, KeyboardInterrupt(), None))]
        )
        suite._handle(worker, p.TestStarted(0, 0), dispatcher, result)  # type: ignore[arg-type]
        suite._handle(worker, p.TestDone(0, record), dispatcher, result)  # type: ignore[arg-type]
        suite._handle(
            worker,  # type: ignore[arg-type]
            p.UnitDone(0, {}, abandoned=True, retry=True),
            dispatcher,
            result,
        )
        self.assertTrue(worker.retiring)
        self.assertEqual(suite.remaining[0], [1, 2])
        self.assertEqual(len(result.errors), 1)
        self.assertIs(result.errors[0][0], test)
        worker.sent.clear()
        suite._dispatch(dispatcher, result)
        self.assertEqual(worker.sent, [])
        # A fresh worker on the slot takes the rest of the unit.
        fresh = FakeWorker(1)
        suite.workers[1] = fresh  # type: ignore[assignment]
        suite._greet(fresh, [t.id() for t in suite.tests])  # type: ignore[arg-type]
        suite._dispatch(dispatcher, result)
        self.assertEqual(fresh.sent, [p.RunUnit(0, [1, 2])])

    def test_abandoned_unit_without_retry_is_reported_not_run(self) -> None:
        suite, dispatcher = make_suite(workers=1)
        result = text_result()
        worker = suite.workers[1]
        suite._dispatch(dispatcher, result)
        suite._handle(
            worker,  # type: ignore[arg-type]
            p.UnitDone(0, {}, abandoned=True, retry=False),
            dispatcher,
            result,
        )
        self.assertEqual(suite.remaining[0], [])
        self.assertEqual(len(result.errors), 1)
        self.assertIn("3 test(s) not run", str(result.errors[0][0]))

    def test_tests_missing_in_a_worker_are_errors_naming_the_import_error(self) -> None:
        suite, dispatcher = make_suite(workers=1)
        result = text_result()
        worker = suite.workers[1]
        worker.import_errors = {"fake": "ImportError: only in the parent"}
        ids = [t.id() for t in suite.tests]
        suite._greet(worker, ids[1:])  # type: ignore[arg-type]  # test 0 is missing
        suite._dispatch(dispatcher, result)
        self.assertEqual(worker.sent, [p.RunUnit(0, [0, 1])])  # worker's indices
        self.assertEqual(len(result.errors), 1)
        self.assertIn("ImportError: only in the parent", result.errors[0][1])


class GreetTests(unittest.TestCase):
    def test_ids_are_mapped_in_order_when_suites_differ(self) -> None:
        suite, _ = make_suite(workers=1)
        worker = FakeWorker(1)
        ids = [t.id() for t in suite.tests]
        suite._greet(worker, ["other.test", *reversed(ids)])  # type: ignore[arg-type]
        self.assertEqual(worker.index_map, {0: 4, 1: 3, 2: 2, 3: 1})
        self.assertEqual(worker.reverse_map[4], 0)


class LostWorkerTests(unittest.TestCase):
    def lose(
        self, worker_setup: Any, dispatch: bool = False
    ) -> tuple[Any, Any, Any, list[tuple[int, int]]]:
        suite, dispatcher = make_suite()
        started: list[tuple[int, int]] = []

        def spawn(slot: int, generation: int) -> FakeWorker:
            started.append((slot, generation))
            return FakeWorker(slot)

        suite.spawn = spawn  # type: ignore[assignment]
        result = text_result()
        if dispatch:
            suite._dispatch(dispatcher, result)
        lost = suite.workers[1]
        worker_setup(lost)
        suite._lost(lost, dispatcher, result)
        return suite, dispatcher, result, started

    def test_a_worker_that_was_never_forked_is_started_again_unreported(
        self,
    ) -> None:
        def never_forked(worker: Any) -> None:
            worker.ready = False
            # The channel's end is seen before the fork server's answer.
            worker.fork_fails = True

        suite, _dispatcher, result, started = self.lose(never_forked)
        self.assertEqual(started, [(1, 0)])
        self.assertIsInstance(suite.workers[1], FakeWorker)
        self.assertEqual((result.errors, result.failures), ([], []))

    def test_a_worker_that_said_hello_is_lost_as_any_other(self) -> None:
        def forked_then_given_up_on(worker: Any) -> None:
            worker.never_started = True  # a fork answer lost with its server

        suite, dispatcher, result, _ = self.lose(forked_then_given_up_on, True)
        # Its unit is accounted for, so the run can end.
        self.assertEqual(suite.remaining[0], [])
        self.assertNotIn(0, dispatcher._in_flight)
        self.assertEqual(len(result.errors), 1)
        self.assertIn("3 test(s) not run", str(result.errors[0][0]))


class OutputMessageTests(unittest.TestCase):
    def test_what_a_unit_wrote_outside_its_tests_is_shown(self) -> None:
        suite, dispatcher = make_suite(workers=1)
        result = text_result()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            suite._handle(
                suite.workers[1],  # type: ignore[arg-type]
                p.UnitOutput(0, b"setUpClass\n", b"on fd 2\n"),
                dispatcher,
                result,
            )
        self.assertEqual(
            (out.getvalue(), err.getvalue()), ("setUpClass\n", "on fd 2\n")
        )
        self.assertTrue(result.wasSuccessful())

    def test_a_fixture_error_keeps_what_the_buffer_held(self) -> None:
        suite, dispatcher = make_suite(workers=1)
        with contextlib.redirect_stdout(io.StringIO()):
            result = text_result()
            result.buffer = True
            suite._handle(
                suite.workers[1],  # type: ignore[arg-type]
                p.FixtureOutcome(
                    0,
                    "setUpClass (fake.mod.Big)",
                    p.Error((RuntimeError, RuntimeError("no"), None)),
                    buffered_stdout="in setUpClass\n",
                ),
                dispatcher,
                result,
            )
        [(_holder, text)] = result.errors
        self.assertIn("Stdout:\nin setUpClass", text)
