"""concurrent_runner.parallel.worker.WorkerResult, driven in-process over a fake pipe.

A small suite runs once straight into a ``TextTestResult`` and once through
``WorkerResult``; the messages the worker sent are then replayed with
``concurrent_runner.parallel.replay``, and both results must agree.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import pickle
import re
import unittest
from collections import deque
from collections.abc import Iterator
from typing import Any
from unittest import mock

from django.db import connections
from django.test.runner import DebugSQLTextTestResult

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.replay import replay_fixture, replay_test
from concurrent_runner.parallel.worker import WorkerResult, run_unit, use_databases

MODULE = "fake.worker_suite"


class FakeConnection:
    """Stands in for the worker's end of the pipe.

    What is sent goes through pickle, as it would across the real pipe.
    """

    def __init__(self, *queued: Any) -> None:
        self.sent: list[Any] = []
        self.inbox: deque[Any] = deque(queued)

    def send(self, message: Any) -> None:
        self.sent.append(pickle.loads(pickle.dumps(message)))

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.inbox)

    def recv(self) -> Any:
        return self.inbox.popleft()

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


def make_class(name: str, methods: dict[str, Any]) -> type:
    attrs = {"__module__": MODULE, "__qualname__": name, **methods}
    return type(name, (unittest.TestCase,), attrs)


def build_suite() -> list[unittest.TestCase]:
    """Fresh classes every time: unittest keeps fixture state on classes."""

    def test_pass(self: Any) -> None:
        self.assertTrue(True)

    def test_fail(self: Any) -> None:
        self.assertEqual(1, 2)

    def test_error(self: Any) -> None:
        raise ValueError("boom")

    def test_skip(self: Any) -> None:
        self.skipTest("not today")

    @unittest.expectedFailure
    def test_known_bug(self: Any) -> None:
        self.assertEqual("bug", "fixed")

    @unittest.expectedFailure
    def test_fixed_bug(self: Any) -> None:
        pass

    def test_subtests(self: Any) -> None:
        for i in range(4):
            with self.subTest("checking", i=i):
                self.assertLess(i, 2)
        with self.subTest(kind="skip"):
            self.skipTest("in a subtest")
        with self.subTest(kind="error"):
            raise KeyError("in a subtest")

    def test_print_and_fail(self: Any) -> None:
        print("hello from a failing test")
        self.fail("after printing")

    def test_print_and_pass(self: Any) -> None:
        print("hello from a passing test")

    outcomes = make_class(
        "Outcomes",
        {
            name: func
            for name, func in locals().items()
            if name.startswith("test_") and callable(func)
        },
    )

    def broken_setup(cls: type) -> None:
        raise RuntimeError("setUpClass went wrong")

    def test_never_runs(self: Any) -> None:
        raise AssertionError("setUpClass failed, so this must not run")

    broken = make_class(
        "BrokenSetup",
        {"setUpClass": classmethod(broken_setup), "test_never_runs": test_never_runs},
    )

    def skip_setup(cls: type) -> None:
        raise unittest.SkipTest("whole class skipped")

    skipped = make_class(
        "SkippedSetup",
        {"setUpClass": classmethod(skip_setup), "test_never_runs": test_never_runs},
    )

    def test_after(self: Any) -> None:
        self.assertEqual(2, 2)

    after = make_class("After", {"test_after": test_after})

    loader = unittest.TestLoader()
    return [
        cls(name)
        for cls in (outcomes, broken, skipped, after)
        for name in loader.getTestCaseNames(cls)
    ]


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Capture what results mirror to stdout/stderr (create results inside)."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        yield captured


def text_result() -> unittest.TextTestResult:
    stream = unittest.runner._WritelnDecorator(io.StringIO())
    result = unittest.TextTestResult(stream, True, 2)
    result.buffer = True
    return result


def run_direct(tests: list[unittest.TestCase]) -> unittest.TextTestResult:
    with quiet():
        result = text_result()
        unittest.TestSuite(tests).run(result)
    return result


def run_in_worker(
    tests: list[unittest.TestCase],
    unit: int = 0,
    indices: list[int] | None = None,
    conn: FakeConnection | None = None,
    failfast: bool = False,
    buffer: bool = True,
) -> tuple[FakeConnection, bool]:
    """As ``run_direct`` does, with ``--buffer`` unless told otherwise."""
    conn = conn or FakeConnection()
    if indices is None:
        indices = list(range(len(tests)))
    with quiet():
        more = run_unit(
            conn,  # type: ignore[arg-type]
            p.RunUnit(unit, indices),
            tests,
            failfast=failfast,
            buffer=buffer,
        )
    return conn, more


def replay(
    tests: list[unittest.TestCase], messages: list[Any]
) -> unittest.TextTestResult:
    with quiet():
        result = text_result()
        for message in messages:
            if isinstance(message, p.TestDone):
                replay_test(result, tests[message.record.index], message.record)
            elif isinstance(message, p.FixtureOutcome):
                replay_fixture(result, message.description, message.outcome)
    return result


def summary(result: unittest.TestResult) -> dict[str, Any]:
    def ids(entries: list[Any]) -> list[str]:
        return [entry[0].id() for entry in entries]

    return {
        "testsRun": result.testsRun,
        "failures": ids(result.failures),
        "errors": ids(result.errors),
        "skipped": [(test.id(), reason) for test, reason in result.skipped],
        "expectedFailures": ids(result.expectedFailures),
        "unexpectedSuccesses": [test.id() for test in result.unexpectedSuccesses],
        "wasSuccessful": result.wasSuccessful(),
    }


_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def report_text(text: str) -> str:
    """A traceback without its ``^^^`` lines.

    tblib rebuilds frames from stub code with no real column positions, so
    Python 3.11+ draws those markers differently after the trip.
    """
    return "\n".join(line for line in text.splitlines() if not _CARETS.match(line))


def label(name: str) -> str:
    return f"{MODULE}.{name}"


class ReplayMatchesDirectRunTests(unittest.TestCase):
    direct: unittest.TextTestResult
    tests: list[unittest.TestCase]
    conn: FakeConnection
    more: bool
    replayed: unittest.TextTestResult

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.direct = run_direct(build_suite())
        cls.tests = build_suite()
        cls.conn, cls.more = run_in_worker(cls.tests)
        cls.replayed = replay(cls.tests, cls.conn.sent)

    def test_the_suite_covers_every_kind(self) -> None:
        s = summary(self.direct)
        self.assertEqual(s["testsRun"], 10)
        self.assertEqual(
            s["failures"],
            [
                label("Outcomes.test_fail"),
                label("Outcomes.test_print_and_fail"),
                label("Outcomes.test_subtests") + " [checking] (i=2)",
                label("Outcomes.test_subtests") + " [checking] (i=3)",
            ],
        )
        self.assertEqual(
            s["errors"],
            [
                label("Outcomes.test_error"),
                label("Outcomes.test_subtests") + " (kind='error')",
                f"setUpClass ({label('BrokenSetup')})",
            ],
        )
        self.assertEqual(
            s["skipped"],
            [
                (label("Outcomes.test_skip"), "not today"),
                (label("Outcomes.test_subtests") + " (kind='skip')", "in a subtest"),
                (f"setUpClass ({label('SkippedSetup')})", "whole class skipped"),
            ],
        )
        self.assertEqual(s["expectedFailures"], [label("Outcomes.test_known_bug")])
        self.assertEqual(s["unexpectedSuccesses"], [label("Outcomes.test_fixed_bug")])

    def test_counts_and_ids_match(self) -> None:
        self.assertEqual(summary(self.replayed), summary(self.direct))

    def test_reports_match(self) -> None:
        for kind in ("failures", "errors", "expectedFailures"):
            direct = getattr(self.direct, kind)
            replayed = getattr(self.replayed, kind)
            self.assertEqual(len(replayed), len(direct))
            for (test, want), (_test, got) in zip(direct, replayed, strict=True):
                with self.subTest(kind=kind, test=test.id()):
                    self.assertEqual(report_text(got), report_text(want))

    def test_reports_name_the_source(self) -> None:
        [(_test, text)] = [
            (t, x) for t, x in self.replayed.failures if t.id().endswith("test_fail")
        ]
        self.assertIn(f'File "{__file__}"', text)
        self.assertIn("in test_fail", text)
        self.assertIn("self.assertEqual(1, 2)", text)
        self.assertIn("AssertionError: 1 != 2", text)

    def test_printed_output_travels_with_the_test(self) -> None:
        records = {
            self.tests[m.record.index].id(): m.record for m in self.conn.of(p.TestDone)
        }
        self.assertEqual(
            records[label("Outcomes.test_print_and_fail")].buffered_stdout,
            "hello from a failing test\n",
        )
        self.assertEqual(
            records[label("Outcomes.test_print_and_pass")].buffered_stdout,
            "hello from a passing test\n",
        )
        self.assertEqual(records[label("Outcomes.test_pass")].buffered_stdout, "")
        [text] = [
            x
            for t, x in self.replayed.failures
            if t.id().endswith("test_print_and_fail")
        ]
        self.assertIn("Stdout:\nhello from a failing test", text)

    def test_verbose_lines_match(self) -> None:
        def lines(result: unittest.TextTestResult) -> list[str]:
            return result.stream.getvalue().splitlines()

        self.assertEqual(lines(self.replayed), lines(self.direct))
        self.assertTrue(lines(self.direct))

    def test_messages_are_well_formed(self) -> None:
        sent = self.conn.sent
        self.assertTrue(self.more)
        self.assertIsInstance(sent[-1], p.UnitDone)
        self.assertEqual(len(self.conn.of(p.UnitDone)), 1)
        started = [m.index for m in self.conn.of(p.TestStarted)]
        done = [m.record.index for m in self.conn.of(p.TestDone)]
        self.assertEqual(started, done)
        # Every TestStarted is followed directly by its TestDone.
        for i, message in enumerate(sent):
            if isinstance(message, p.TestStarted):
                self.assertIsInstance(sent[i + 1], p.TestDone)
                self.assertEqual(sent[i + 1].record.index, message.index)
        # The classes whose setUpClass failed or skipped ran no test.
        never = {
            i for i, t in enumerate(self.tests) if t.id().endswith("test_never_runs")
        }
        self.assertEqual(len(never), 2)
        self.assertFalse(never & set(started))
        fixtures = self.conn.of(p.FixtureOutcome)
        self.assertEqual(
            [(f.description, type(f.outcome)) for f in fixtures],
            [
                (f"setUpClass ({label('BrokenSetup')})", p.Error),
                (f"setUpClass ({label('SkippedSetup')})", p.Skip),
            ],
        )
        self.assertTrue(all(m.unit == 0 for m in sent if hasattr(m, "unit")))

    def test_outcome_kinds(self) -> None:
        kinds = {
            # Sorted: Python 3.10 reports a test's skipped subtests first.
            self.tests[m.record.index].id().rsplit(".", 1)[1]: sorted(
                type(o).__name__ for o in m.record.outcomes
            )
            for m in self.conn.of(p.TestDone)
        }
        self.assertEqual(
            kinds,
            {
                "test_pass": ["Success"],
                "test_fail": ["Failure"],
                "test_error": ["Error"],
                "test_skip": ["Skip"],
                "test_known_bug": ["ExpectedFailure"],
                "test_fixed_bug": ["UnexpectedSuccess"],
                "test_subtests": ["Skip"] + ["SubTestResult"] * 3,
                "test_print_and_fail": ["Failure"],
                "test_print_and_pass": ["Success"],
                "test_after": ["Success"],
            },
        )

    def test_subtest_records(self) -> None:
        [record] = [
            m.record
            for m in self.conn.of(p.TestDone)
            if self.tests[m.record.index].id().endswith("test_subtests")
        ]
        self.assertEqual(
            [
                (o.message, o.params)
                for o in record.outcomes
                if isinstance(o, p.SubTestResult)
            ],
            [("checking", {"i": 2}), ("checking", {"i": 3}), (None, {"kind": "error"})],
        )
        # A subtest's skip names the subtest (found by the differential test:
        # it was replayed as the whole test's skip).
        [skip] = [o for o in record.outcomes if isinstance(o, p.Skip)]
        self.assertEqual(skip.reason, "in a subtest")
        self.assertIsNotNone(skip.subtest)
        assert skip.subtest is not None
        self.assertEqual(
            (skip.subtest.message, skip.subtest.params), (None, {"kind": "skip"})
        )

    def test_durations_are_recorded(self) -> None:
        # From addDuration on 3.12+, measured by the worker before that.
        records = [m.record for m in self.conn.of(p.TestDone)]
        self.assertTrue(records)
        for record in records:
            self.assertIsNotNone(record.duration)
            self.assertGreaterEqual(record.duration, 0.0)


class WorkerResultTests(unittest.TestCase):
    def test_a_subset_keeps_the_suite_indices(self) -> None:
        tests = build_suite()
        ids = [t.id() for t in tests]
        wanted = [
            ids.index(label("After.test_after")),
            ids.index(label("Outcomes.test_pass")),
        ]
        conn, more = run_in_worker(tests, unit=7, indices=wanted)
        self.assertTrue(more)
        self.assertEqual([m.record.index for m in conn.of(p.TestDone)], wanted)
        self.assertTrue(all(m.unit == 7 for m in conn.sent))

    def test_stop_takes_effect_after_the_current_test(self) -> None:
        tests = build_suite()
        conn = FakeConnection(p.Stop())
        with quiet():
            result = WorkerResult(conn, 0, tests)  # type: ignore[arg-type]
            unittest.TestSuite(tests).run(result)
        self.assertTrue(result.shouldStop)
        self.assertEqual(result.testsRun, 1)
        self.assertEqual([m.record.index for m in conn.of(p.TestDone)], [0])
        self.assertEqual(len(conn.of(p.TestStarted)), 1)
        self.assertFalse(conn.inbox)

    def test_run_unit_says_stop_after_a_stop(self) -> None:
        tests = build_suite()
        conn, more = run_in_worker(tests, conn=FakeConnection(p.Stop()))
        self.assertFalse(more)
        self.assertEqual(len(conn.of(p.TestDone)), 1)
        self.assertEqual(len(conn.of(p.UnitDone)), 1)

    def test_failfast_stops_the_unit(self) -> None:
        tests = build_suite()
        ids = [t.id() for t in tests]
        order = [
            ids.index(label("Outcomes.test_pass")),
            ids.index(label("Outcomes.test_fail")),
            ids.index(label("After.test_after")),
        ]
        conn, more = run_in_worker(tests, indices=order, failfast=True)
        self.assertFalse(more)
        self.assertEqual([m.record.index for m in conn.of(p.TestDone)], order[:2])

    def test_class_durations(self) -> None:
        tests = build_suite()
        conn = FakeConnection()
        with quiet():
            result = WorkerResult(conn, 0, tests)  # type: ignore[arg-type]
            unittest.TestSuite(tests).run(result)
        durations = result.class_durations()
        # Classes whose setUpClass failed or skipped started no test.
        self.assertEqual(sorted(durations), [label("After"), label("Outcomes")])
        for value in durations.values():
            self.assertGreaterEqual(value, 0.0)

    def test_unit_done_carries_class_durations(self) -> None:
        tests = build_suite()
        ids = [t.id() for t in tests]
        conn, _more = run_in_worker(
            tests, indices=[ids.index(label("After.test_after"))]
        )
        [done] = conn.of(p.UnitDone)
        self.assertEqual(list(done.class_durations), [label("After")])
        self.assertGreaterEqual(done.class_durations[label("After")], 0.0)

    def test_unpicklable_error_arrives_as_remote_error(self) -> None:
        class HoldsALambda(Exception):
            def __init__(self) -> None:
                super().__init__("cannot travel")
                self.callback = lambda: None

        def test_it(self: Any) -> None:
            raise HoldsALambda()

        tests = [make_class("Odd", {"test_it": test_it})("test_it")]
        conn, _more = run_in_worker(tests)
        result = replay(tests, conn.sent)
        [(test, text)] = result.errors
        self.assertIs(test, tests[0])
        self.assertIn("RemoteError", text)
        self.assertIn("HoldsALambda", text)
        self.assertIn("cannot travel", text)
        self.assertIn("in test_it", text)


class UnstartedSkipTests(unittest.TestCase):
    """Python 3.12.0 and 3.12.1 report a ``@skip`` test with addSkip and
    stopTest, never startTest; here that sequence is played on any Python."""

    def tests(self) -> list[unittest.TestCase]:
        cls = make_class(
            "Skips", {"test_a": lambda self: None, "test_b": lambda self: None}
        )
        return [cls("test_a"), cls("test_b")]

    def test_the_first_test_of_a_unit(self) -> None:
        tests = self.tests()
        conn = FakeConnection()
        result = WorkerResult(conn, 0, tests)  # type: ignore[arg-type]
        result.addSkip(tests[0], "why")
        result.stopTest(tests[0])  # AttributeError: no _test_started, once
        [done] = conn.of(p.TestDone)
        self.assertEqual(done.record.outcomes, [p.Skip("why")])
        self.assertFalse(done.record.started)
        self.assertFalse(conn.of(p.TestStarted))

    def test_no_duration_not_the_previous_tests(self) -> None:
        tests = self.tests()
        conn = FakeConnection()
        result = WorkerResult(conn, 0, tests)  # type: ignore[arg-type]
        # A clock that moves 5 s at every look.
        with mock.patch("time.monotonic", side_effect=itertools.count(0, 5)):
            result.startTest(tests[0])
            result.addSuccess(tests[0])
            result.stopTest(tests[0])
            result.addSkip(tests[1], "why")
            result.stopTest(tests[1])
        first, second = (m.record for m in conn.of(p.TestDone))
        self.assertIsNotNone(first.duration)
        # Serially such a skip has no duration (no addDuration); it used to
        # get the time since the previous test started.
        self.assertIsNone(second.duration)

    def test_a_class_whose_first_test_is_skipped_runs_whole(self) -> None:
        @unittest.skip("skipped before it starts")
        def test_1(self: Any) -> None:
            pass

        def test_2(self: Any) -> None:
            self.fail("the class's real failure")

        cls = make_class("SkippedFirst", {"test_1": test_1, "test_2": test_2})
        tests = [cls("test_1"), cls("test_2")]
        conn, more = run_in_worker(tests)
        self.assertTrue(more)
        kinds = [[type(o) for o in m.record.outcomes] for m in conn.of(p.TestDone)]
        self.assertEqual(kinds, [[p.Skip], [p.Failure]])
        self.assertEqual(summary(replay(tests, conn.sent)), summary(run_direct(tests)))


class DebugSQLTests(unittest.TestCase):
    """--debug-sql: what the backends logger says during a test travels."""

    def setUp(self) -> None:
        self.logger = logging.getLogger("django.db.backends")
        self.addCleanup(self.logger.setLevel, self.logger.level)
        for alias in connections:
            self.addCleanup(
                setattr,
                connections[alias],
                "force_debug_cursor",
                connections[alias].force_debug_cursor,
            )

    def test_sql_is_recorded_and_replayed(self) -> None:
        logger = self.logger

        def test_query(self: Any) -> None:
            # What CursorDebugWrapper logs, without touching a database.
            logger.debug("(0.001) SELECT 42 FROM fake_table; args=()")
            self.fail("to see the SQL in the report")

        tests = [make_class("Sql", {"test_query": test_query})("test_query")]
        self.logger.setLevel(logging.DEBUG)
        connections["default"].force_debug_cursor = True
        conn, _more = run_in_worker(tests)
        connections["default"].force_debug_cursor = False
        [done] = conn.of(p.TestDone)
        self.assertIn("SELECT 42 FROM fake_table", done.record.sql)
        with quiet():
            stream = unittest.runner._WritelnDecorator(io.StringIO())
            result: Any = DebugSQLTextTestResult(stream, True, 2)
            replay_test(result, tests[0], done.record)
        [(_test, _text, sql)] = result.failures
        self.assertIn("SELECT 42 FROM fake_table", sql)
        # And nothing more is captured once the test is over.
        logger.debug("(0.001) SELECT 43; args=()")
        self.assertNotIn("SELECT 43", done.record.sql)

    def test_without_debug_sql_nothing_is_recorded(self) -> None:
        logger = self.logger

        def test_query(self: Any) -> None:
            logger.debug("(0.001) SELECT 42; args=()")

        tests = [make_class("Sql", {"test_query": test_query})("test_query")]
        self.logger.setLevel(logging.DEBUG)
        for alias in connections:
            connections[alias].force_debug_cursor = False
        conn, _more = run_in_worker(tests)
        [done] = conn.of(p.TestDone)
        self.assertEqual(done.record.sql, "")

    def test_use_databases_turns_the_sql_log_on(self) -> None:
        # Django raises the backends logger to DEBUG only in
        # DebugSQLTextTestResult, which a worker never makes; at the default
        # INFO every query would be dropped.
        self.logger.setLevel(logging.INFO)
        use_databases(p.Configure(databases={}, serialized={}, debug_sql=True))
        self.assertTrue(all(connections[a].force_debug_cursor for a in connections))
        self.assertTrue(self.logger.isEnabledFor(logging.DEBUG))
