"""concurrent_runner.parallel.controller without processes: fakes record what
the controller starts, sends and reports, as pytest-xdist's scheduler tests
do with their MockNode."""

from __future__ import annotations

import unittest
from typing import Any

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.controller import (
    RunController,
    RunListener,
    TestInfo,
    TestInterrupted,
    WorkerCrashed,
    WorkerStartupError,
)
from concurrent_runner.parallel.endings import EndKind, WorkerEnding
from concurrent_runner.planning.groups import Strategy, Unit
from concurrent_runner.planning.plan import make_plan

EXITED = WorkerEnding(EndKind.EXITED, 3, log_tail="boom")
KILLED = WorkerEnding(EndKind.SIGNALLED, 9)


class FakeWorkers:
    """Records every start and message, per slot."""

    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self.sent: dict[int, list[Any]] = {}

    def start(self, slot: int, generation: int) -> None:
        self.started.append((slot, generation))

    def send(self, slot: int, message: object) -> None:
        self.sent.setdefault(slot, []).append(message)

    def units_sent(self, slot: int) -> list[p.RunUnit]:
        return [m for m in self.sent.get(slot, []) if isinstance(m, p.RunUnit)]


class FakeReport:
    """Records what would go into the unittest result."""

    def __init__(self) -> None:
        self.tests: list[tuple[int, p.TestRecord]] = []
        self.fixtures: list[tuple[str, Any]] = []
        self.test_errors: list[tuple[int, Exception]] = []
        self.fixture_errors: list[tuple[str, Exception]] = []
        self.outputs: list[tuple[bytes, bytes]] = []
        self.should_stop = False

    def test(self, index: int, record: p.TestRecord) -> None:
        self.tests.append((index, record))

    def fixture(self, message: p.FixtureOutcome) -> None:
        self.fixtures.append((message.description, message.outcome))

    def output(self, stdout: bytes, stderr: bytes) -> None:
        self.outputs.append((stdout, stderr))

    def test_error(self, index: int, error: Exception) -> None:
        self.test_errors.append((index, error))

    def fixture_error(self, description: str, error: Exception) -> None:
        self.fixture_errors.append((description, error))


class Events(RunListener):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def unit_started(self, slot: int, unit: int, phase: str) -> None:
        self.seen.append(("started", slot, unit))

    def unit_ended(self, slot: int, unit: int, outcome: str) -> None:
        self.seen.append(("ended", slot, unit, outcome))

    def unit_finished(self, unit: int) -> None:
        self.seen.append(("finished", unit))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# Two classes in one module: Big (3 tests, positions 0-2) and Small (one
# test, position 3); a serial group of two classes in another module.
TESTS = [
    TestInfo("app.tests.Big.test_0", "app.tests.Big", "app.tests"),
    TestInfo("app.tests.Big.test_1", "app.tests.Big", "app.tests"),
    TestInfo("app.tests.Big.test_2", "app.tests.Big", "app.tests"),
    TestInfo("app.tests.Small.test_0", "app.tests.Small", "app.tests"),
]
UNITS = [
    Unit("app.tests.Big", None, Strategy.FREE, ["app.tests.Big"], [0, 1, 2]),
    Unit("app.tests.Small", None, Strategy.FREE, ["app.tests.Small"], [3]),
]
IDS = [t.id for t in TESTS]


def make(
    workers: int = 2,
    *,
    ready: bool = True,
    group_timeout: float | None = None,
    tests: list[TestInfo] = TESTS,
    units: list[Unit] = UNITS,
) -> tuple[RunController, FakeWorkers, FakeReport, Events, Clock]:
    """A started controller; with ``ready``, every worker said hello and
    has its databases."""
    estimates = [float(len(u.indices)) for u in units]
    plan = make_plan(units, estimates, workers)
    fakes, report, events, clock = FakeWorkers(), FakeReport(), Events(), Clock()
    controller = RunController(
        tests,
        units,
        plan,
        estimates,
        workers=fakes,
        listeners=[events],
        group_timeout=group_timeout,
        clock=clock,
    )
    controller.report = report
    controller.start()
    controller.configure(
        {s: p.Configure({}, {}, False) for s in range(1, plan.workers + 1)}
    )
    if ready:
        for slot in controller.slots:
            controller.worker_ready(slot, [t.id for t in tests])
            controller.databases_ready(slot)
    return controller, fakes, report, events, clock


def passed(index: int) -> p.TestRecord:
    return p.TestRecord(index, [p.Success()])


def failed(index: int) -> p.TestRecord:
    error = AssertionError("no")
    return p.TestRecord(index, [p.Failure((AssertionError, error, None))])


class StartAndDispatchTests(unittest.TestCase):
    def test_every_slot_gets_a_worker_then_its_configure_then_units(self) -> None:
        controller, fakes, _, events, _ = make()
        self.assertEqual(fakes.started, [(1, 0), (2, 0)])
        controller.dispatch()
        self.assertIsInstance(fakes.sent[1][0], p.Configure)
        # LPT: the longer unit to worker 1, the other to worker 2.
        self.assertEqual(fakes.units_sent(1), [p.RunUnit(0, [0, 1, 2])])
        self.assertEqual(fakes.units_sent(2), [p.RunUnit(1, [3])])
        self.assertEqual(events.seen, [("started", 1, 0), ("started", 2, 1)])

    def test_a_worker_waits_for_its_databases(self) -> None:
        controller, fakes, *_ = make(ready=False)
        for slot in (1, 2):
            controller.worker_ready(slot, IDS)
        controller.dispatch()
        self.assertEqual(fakes.sent, {})
        controller.databases_ready(2)
        controller.dispatch()
        self.assertNotIn(1, fakes.sent)
        # Its own share of the plan first (worker 1's is the longer unit).
        self.assertEqual(fakes.sent[2], [p.Configure({}, {}, False), p.RunUnit(1, [3])])

    def test_a_worker_that_has_not_said_hello_gets_nothing(self) -> None:
        controller, fakes, *_ = make(ready=False)
        controller.databases_ready(1)
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1), [])

    def test_indices_follow_the_workers_own_suite(self) -> None:
        controller, fakes, *_ = make(ready=False, workers=1)
        controller.worker_ready(1, ["other.test", *reversed(IDS)])
        controller.databases_ready(1)
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1), [p.RunUnit(0, [4, 3, 2])])
        controller.test_started(1, 4)
        self.assertEqual(controller.slots[1].in_flight, 0)

    def test_tests_missing_in_a_worker_are_errors_naming_the_import_error(
        self,
    ) -> None:
        controller, fakes, report, *_ = make(ready=False, workers=1)
        controller.worker_ready(1, IDS[1:], {"app": "ImportError: only here"})
        controller.databases_ready(1)
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1), [p.RunUnit(0, [0, 1])])
        [(index, error)] = report.test_errors
        self.assertEqual(index, 0)
        self.assertIsInstance(error, WorkerCrashed)
        self.assertIn("ImportError: only here", str(error))

    def test_records_are_replayed_under_the_parents_indices(self) -> None:
        controller, fakes, report, events, _ = make(workers=1)
        controller.dispatch()
        for index in range(3):
            controller.test_started(1, index)
            controller.test_done(1, passed(index))
        controller.unit_done(1, 0, {"app.tests.Big": 1.5}, [])
        self.assertEqual([i for i, _ in report.tests], [0, 1, 2])
        self.assertEqual(controller.measured, {"app.tests.Big": 1.5})
        self.assertIn(("finished", 0), events.seen)
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1)[-1], p.RunUnit(1, [3]))
        controller.test_started(1, 3)
        controller.test_done(1, passed(3))
        controller.unit_done(1, 1, {}, [])
        self.assertTrue(controller.finished)


class FlushedTests(unittest.TestCase):
    def test_the_slot_keeps_what_was_flushed_for_its_next_unit(self) -> None:
        controller, fakes, *_ = make(workers=1)
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1)[0].flushed, [])
        controller.unit_done(1, 0, {}, ["default"])
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1)[1].flushed, ["default"])

    def test_after_a_crash_the_slots_databases_are_unknown(self) -> None:
        controller, fakes, *_ = make(workers=1)
        controller.dispatch()
        controller.test_started(1, 0)
        controller.worker_lost(1, KILLED)
        controller.worker_ready(1, IDS)
        controller.dispatch()
        self.assertIsNone(fakes.units_sent(1)[-1].flushed)


class LostWorkerTests(unittest.TestCase):
    def test_death_in_a_test_is_its_error_and_the_rest_runs_on_a_new_worker(
        self,
    ) -> None:
        controller, fakes, report, events, _ = make(workers=1)
        controller.dispatch()
        controller.test_started(1, 0)
        controller.test_done(1, passed(0))
        controller.test_started(1, 1)
        controller.worker_lost(1, EXITED)
        [(index, error)] = report.test_errors
        self.assertEqual(index, 1)
        self.assertEqual(
            str(error),
            "The worker running app.tests.Big.test_1 exited with code 3.\n\n"
            "Last output of the worker:\nboom",
        )
        self.assertEqual(fakes.started, [(1, 0), (1, 1)])  # a replacement
        self.assertIn(("ended", 1, 0, "crashed"), events.seen)
        controller.worker_ready(1, IDS)
        controller.dispatch()
        # The crashed test's class fixtures run again around the rest, not it.
        self.assertEqual(fakes.units_sent(1)[-1].indices, [1, 2])
        self.assertEqual(fakes.units_sent(1)[-1].fixtures_only, [1])

    def test_a_failed_setupclass_then_a_death_does_not_retry_its_tests(self) -> None:
        # Found by the differential test: setUpClass raised, tearDownModule
        # killed the worker, and the class's tests (never run) went to a new
        # worker, which did the same, for ever: the run hung.
        controller, fakes, _report, *_ = make(workers=1)
        controller.dispatch()
        started = len(fakes.units_sent(1))
        controller.fixture_started(
            1, p.FixtureStarted(0, "setUpClass", "app.tests.Big")
        )
        error = ValueError("in setUpClass")
        controller.fixture_outcome(
            1,
            p.FixtureOutcome(
                0, "setUpClass (app.tests.Big)", p.Error((ValueError, error, None))
            ),
        )
        controller.fixture_started(
            1, p.FixtureStarted(0, "tearDownModule", "app.tests")
        )
        controller.worker_lost(1, EXITED)
        self.assertEqual(controller.remaining[0], [])
        controller.worker_ready(1, IDS)
        controller.dispatch()
        # Big is over; Small is next.
        self.assertEqual(fakes.units_sent(1)[started:], [p.RunUnit(1, [3], None)])

    def test_death_in_tear_down_class_still_runs_the_modules_teardown(self) -> None:
        # Found by the differential test: tearDownModule never ran.
        controller, fakes, _report, _events, _ = make(workers=1)
        controller.dispatch()
        for index in (0, 1, 2):
            controller.test_started(1, index)
            controller.test_done(1, passed(index))
        controller.fixture_started(
            1, p.FixtureStarted(0, "tearDownClass", "app.tests.Big")
        )
        controller.worker_lost(1, EXITED)
        controller.worker_ready(1, IDS)
        controller.dispatch()
        unit = fakes.units_sent(1)[-1]
        self.assertEqual(unit.unit, 0)
        self.assertEqual((unit.indices, unit.module_fixtures_only), ([0], [0]))
        self.assertEqual(unit.fixtures_only, [])

    def test_death_in_the_units_last_test_still_runs_its_teardowns(self) -> None:
        # Found by the differential test: tearDownClass and tearDownModule,
        # which serially run after the test, never ran.
        controller, fakes, report, _events, _ = make(workers=1)
        controller.dispatch()
        for index in (0, 1):
            controller.test_started(1, index)
            controller.test_done(1, passed(index))
        controller.test_started(1, 2)
        controller.worker_lost(1, EXITED)
        self.assertEqual([index for index, _ in report.test_errors], [2])
        self.assertFalse(controller.finished)
        controller.worker_ready(1, IDS)
        controller.dispatch()
        unit = fakes.units_sent(1)[-1]
        self.assertEqual((unit.indices, unit.fixtures_only), ([2], [2]))
        controller.unit_done(1, unit.unit, {}, [])
        controller.dispatch()  # Big is over: Small comes next
        self.assertEqual(fakes.units_sent(1)[-1].indices, [3])

    def test_death_in_setupclass_drops_the_class_and_names_the_fixture(
        self,
    ) -> None:
        controller, fakes, report, *_ = make(workers=1)
        controller.dispatch()
        controller.fixture_started(1, p.FixtureStarted(0, "setUpModule", "app.tests"))
        controller.fixture_started(
            1, p.FixtureStarted(0, "setUpClass", "app.tests.Big")
        )
        controller.worker_lost(1, KILLED)
        [(description, error)] = report.fixture_errors
        self.assertEqual(description, "setUpClass (app.tests.Big)")
        self.assertIn("was killed by SIGKILL", str(error))
        self.assertEqual(report.test_errors, [])
        self.assertEqual(controller.remaining[0], [])  # not run, as in unittest
        self.assertEqual(fakes.started[-1], (1, 1))
        controller.worker_ready(1, IDS)
        controller.dispatch()
        # The module's fixtures (its teardown is still due) run, then Small.
        self.assertEqual(
            fakes.units_sent(1)[-1],
            p.RunUnit(0, [0], None, module_fixtures_only=[0]),
        )
        controller.unit_done(1, 0, {}, [])
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1)[-1], p.RunUnit(1, [3], []))

    def test_death_in_a_teardown_after_the_last_test_fails_the_run(self) -> None:
        # Issue 19.1: tearDownClass or tearDownModule that kills the worker
        # once every test of its unit has passed.
        for fixture in (
            p.FixtureStarted(0, "tearDownClass", "app.tests.Big"),
            p.FixtureStarted(0, "tearDownModule", "app.tests"),
        ):
            with self.subTest(fixture=fixture):
                controller, _, report, events, _ = make(workers=1)
                controller.dispatch()
                for index in range(3):
                    controller.test_started(1, index)
                    controller.test_done(1, passed(index))
                controller.fixture_started(1, fixture)
                controller.worker_lost(1, EXITED)
                self.assertEqual(len(report.tests), 3)
                [(description, error)] = report.fixture_errors
                self.assertEqual(description, fixture.description)
                self.assertTrue(
                    str(error).startswith(f"The worker running {description}")
                )
                if fixture.method == "tearDownClass":
                    # Its module's teardown is still due: a worker runs it.
                    self.assertNotIn(("finished", 0), events.seen)
                    controller.worker_ready(1, IDS)
                    controller.dispatch()
                    controller.unit_done(1, 0, {}, [])
                self.assertIn(("finished", 0), events.seen)

    def test_death_between_tests_is_an_error_of_the_unit(self) -> None:
        controller, _, report, *_ = make(workers=1)
        controller.dispatch()
        controller.test_started(1, 0)
        controller.test_done(1, passed(0))
        controller.worker_lost(1, EXITED)
        [(description, error)] = report.fixture_errors
        self.assertEqual(description, "app.tests.Big")
        self.assertIn("between two tests", str(error))
        self.assertEqual(controller.remaining[0], [1, 2])

    def test_a_unit_that_kills_workers_before_any_progress_is_given_up(
        self,
    ) -> None:
        controller, fakes, report, *_ = make(workers=1)
        for _ in range(2):
            controller.dispatch()
            controller.worker_lost(1, EXITED)
            controller.worker_ready(1, IDS)
        self.assertEqual(controller.remaining[0], [])
        self.assertIn(
            "3 test(s) of app.tests.Big not run", str(report.fixture_errors[-1][1])
        )
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1)[-1].unit, 1)

    def test_a_worker_never_forked_is_started_again_unreported(self) -> None:
        controller, fakes, report, *_ = make(ready=False)
        controller.worker_lost(1, WorkerEnding(EndKind.FORK_FAILED, error="EAGAIN"))
        self.assertEqual(fakes.started, [(1, 0), (2, 0), (1, 1)])
        self.assertEqual((report.test_errors, report.fixture_errors), ([], []))

    def test_a_worker_that_dies_before_hello_stops_the_run(self) -> None:
        controller, *_ = make(ready=False)
        with self.assertRaisesRegex(WorkerStartupError, "exited with code 3"):
            controller.worker_lost(1, EXITED)

    def test_a_silent_worker_is_found_by_its_timer(self) -> None:
        controller, _, _, _, clock = make(ready=False)
        controller.worker_ready(2, IDS)
        clock.now += 301
        self.assertEqual(controller.silent(clock.now, 300), [1])

    def test_overdue_units_are_found_by_their_timer(self) -> None:
        controller, _, report, _, clock = make(group_timeout=5)
        controller.dispatch()
        clock.now += 4
        self.assertEqual(controller.overdue(clock.now), [])
        clock.now += 2
        self.assertEqual(controller.overdue(clock.now), [1, 2])
        controller.test_started(1, 1)
        stuck = WorkerEnding(EndKind.TIMED_OUT, limit=5, stacks="File x, line 1")
        controller.worker_lost(1, stuck)
        self.assertIn(
            "was stopped: its unit ran longer than --group-timeout (5s). "
            "Where it was:\n\nFile x, line 1",
            str(report.test_errors[0][1]),
        )

    def test_a_lost_worker_with_nothing_left_to_do_is_not_replaced(self) -> None:
        controller, fakes, *_ = make(workers=1)
        controller.dispatch()
        for index in range(3):
            controller.test_started(1, index)
            controller.test_done(1, passed(index))
        controller.unit_done(1, 0, {}, [])
        controller.dispatch()
        controller.test_started(1, 3)
        controller.test_done(1, passed(3))
        controller.unit_done(1, 1, {}, [])
        controller.worker_lost(1, EXITED)
        self.assertEqual(fakes.started, [(1, 0)])
        self.assertTrue(controller.finished)


class AbandonedUnitTests(unittest.TestCase):
    def test_with_retry_the_rest_goes_to_a_new_worker_not_this_one(self) -> None:
        controller, fakes, *_ = make(workers=1)
        controller.dispatch()
        controller.test_started(1, 0)
        error = KeyboardInterrupt()
        record = p.TestRecord(0, [p.Error((KeyboardInterrupt, error, None))])
        controller.test_done(1, record)
        controller.unit_abandoned(1, 0, retry=True)
        controller.dispatch()
        self.assertEqual(len(fakes.units_sent(1)), 1)  # it is leaving
        controller.worker_lost(1, WorkerEnding(EndKind.EXITED, 0))
        controller.worker_ready(1, IDS)
        controller.dispatch()
        self.assertEqual(fakes.units_sent(1)[-1].indices, [1, 2])

    def test_without_retry_the_rest_is_not_run(self) -> None:
        controller, *_ = make(workers=1)
        controller.dispatch()
        controller.unit_abandoned(1, 0, retry=False)
        self.assertEqual(controller.remaining[0], [])


class StopTests(unittest.TestCase):
    def test_failfast_reports_nothing_after_the_first_failure(self) -> None:
        controller, fakes, report, *_ = make()
        controller.dispatch()
        controller.test_started(1, 0)
        report.should_stop = True  # the result's failfast, on this failure
        controller.test_done(1, failed(0))
        self.assertIsNotNone(controller.stopped_at)
        self.assertIn(p.Stop(), fakes.sent[1])
        self.assertIn(p.Stop(), fakes.sent[2])
        controller.test_started(2, 3)
        controller.test_done(2, passed(3))  # finished after the failure
        self.assertEqual([i for i, _ in report.tests], [0])
        controller.unit_done(2, 1, {}, [])
        controller.unit_done(1, 0, {}, [])
        self.assertTrue(controller.finished)
        controller.worker_lost(1, EXITED)  # told to stop: nothing to report
        self.assertEqual(report.test_errors, [])
        self.assertEqual(fakes.started, [(1, 0), (2, 0)])

    def test_an_interrupt_names_the_tests_in_flight_as_errors(self) -> None:
        controller, _, report, *_ = make()
        controller.dispatch()
        controller.test_started(1, 1)
        controller.fixture_started(
            2, p.FixtureStarted(1, "setUpClass", "app.tests.Small")
        )
        running = controller.interrupt("SIGINT")
        self.assertEqual(running, ["app.tests.Big.test_1"])
        [(index, error)] = report.test_errors
        self.assertEqual(index, 1)
        self.assertIsInstance(error, TestInterrupted)
        self.assertIn("SIGINT", str(error))
        self.assertTrue(controller.finished)
        self.assertEqual(controller.not_run(), 3)


class OutputTests(unittest.TestCase):
    def test_what_a_unit_writes_outside_its_tests_goes_to_the_result(self) -> None:
        controller, _, report, *_ = make(workers=1)
        controller.dispatch()
        controller.unit_output(1, b"setUpClass\n", b"")
        self.assertEqual(report.outputs, [(b"setUpClass\n", b"")])
        error = RuntimeError("no")
        controller.fixture_outcome(
            1,
            p.FixtureOutcome(
                0, "setUpClass (app.tests.Big)", p.Error((RuntimeError, error, None))
            ),
        )
        self.assertEqual(report.fixtures[0][0], "setUpClass (app.tests.Big)")


class FixtureOnceTests(unittest.TestCase):
    def test_a_module_fixture_error_of_several_units_is_reported_once(self) -> None:
        # Serially tearDownModule runs once; here in each unit of the module.
        controller, _, report, *_ = make()
        controller.dispatch()
        error = RuntimeError("no")
        for slot, unit in ((1, 0), (2, 1)):
            controller.fixture_outcome(
                slot,
                p.FixtureOutcome(
                    unit,
                    "tearDownModule (app.tests)",
                    p.Error((RuntimeError, error, None)),
                ),
            )
        self.assertEqual(
            [d for d, _ in report.fixtures], ["tearDownModule (app.tests)"]
        )

    def test_and_so_is_a_worker_lost_in_it_each_time(self) -> None:
        controller, _, report, *_ = make()
        controller.dispatch()
        for slot, unit in ((1, 0), (2, 1)):
            controller.fixture_started(
                slot, p.FixtureStarted(unit, "tearDownModule", "app.tests")
            )
            controller.worker_lost(slot, EXITED)
        self.assertEqual(
            [d for d, _ in report.fixture_errors], ["tearDownModule (app.tests)"]
        )
