"""concurrent_runner.parallel.replay: worker records replayed into an
ordinary result."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
import unittest
from typing import Any
from unittest import mock

from django.test.runner import DebugSQLTextTestResult

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.controller import WorkerCrashed
from concurrent_runner.parallel.replay import (
    replay_error,
    replay_fixture,
    replay_fixture_error,
    replay_outcome,
    replay_output,
    replay_test,
)

MODULE = "fake.mod"
#: Seconds any wait in these tests may take.
BOUND = 30.0


def make_test(method: str = "test_it", cls_name: str = "Sample") -> Any:
    attrs = {"__module__": MODULE, "__qualname__": cls_name, method: lambda self: None}
    return type(cls_name, (unittest.TestCase,), attrs)(method)


def exc_info(exc: BaseException) -> p.ExcInfo:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    assert info[0] is not None and info[1] is not None
    return info


def text_result(
    verbosity: int = 2, cls: type = unittest.TextTestResult
) -> tuple[Any, io.StringIO]:
    stream = io.StringIO()
    result = cls(unittest.runner._WritelnDecorator(stream), True, verbosity)
    return result, stream


def record(*outcomes: p.Outcome, **fields: Any) -> p.TestRecord:
    return p.TestRecord(index=0, outcomes=list(outcomes), **fields)


class OutcomeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.result, self.stream = text_result()
        self.test = make_test()

    def replay(self, *outcomes: p.Outcome, **fields: Any) -> None:
        replay_test(self.result, self.test, record(*outcomes, **fields))

    def test_success(self) -> None:
        self.replay(p.Success())
        self.assertEqual(self.result.testsRun, 1)
        self.assertTrue(self.result.wasSuccessful())
        self.assertRegex(self.stream.getvalue(), r"test_it .*\.\.\. ok\n")

    def test_failure(self) -> None:
        self.replay(p.Failure(exc_info(AssertionError("1 != 2"))))
        self.assertEqual(self.result.testsRun, 1)
        [(test, text)] = self.result.failures
        self.assertIs(test, self.test)
        self.assertIn("Traceback (most recent call last)", text)
        self.assertIn("AssertionError: 1 != 2", text)
        self.assertEqual(self.result.errors, [])
        self.assertIn("... FAIL", self.stream.getvalue())
        self.assertFalse(self.result.wasSuccessful())

    def test_error(self) -> None:
        self.replay(p.Error(exc_info(ValueError("boom"))))
        [(test, text)] = self.result.errors
        self.assertIs(test, self.test)
        self.assertIn("ValueError: boom", text)
        self.assertEqual(self.result.failures, [])
        self.assertIn("... ERROR", self.stream.getvalue())

    def test_skip(self) -> None:
        self.replay(p.Skip("not today"))
        self.assertEqual(self.result.skipped, [(self.test, "not today")])
        self.assertTrue(self.result.wasSuccessful())
        self.assertIn("skipped 'not today'", self.stream.getvalue())

    def test_expected_failure(self) -> None:
        self.replay(p.ExpectedFailure(exc_info(AssertionError("known"))))
        [(test, text)] = self.result.expectedFailures
        self.assertIs(test, self.test)
        self.assertIn("AssertionError: known", text)
        self.assertTrue(self.result.wasSuccessful())
        self.assertIn("expected failure", self.stream.getvalue())

    def test_unexpected_success(self) -> None:
        self.replay(p.UnexpectedSuccess())
        self.assertEqual(self.result.unexpectedSuccesses, [self.test])
        self.assertFalse(self.result.wasSuccessful())
        self.assertIn("unexpected success", self.stream.getvalue())

    def test_subtests(self) -> None:
        self.replay(
            p.SubTestResult(None, {"i": 1}, exc_info(AssertionError("first"))),
            p.SubTestResult("named", {"i": 2, "s": "x"}, exc_info(KeyError("k"))),
            p.SubTestResult("passed", {"i": 3}, None),
        )
        self.assertEqual(self.result.testsRun, 1)
        [(failed, failure_text)] = self.result.failures
        [(errored, error_text)] = self.result.errors
        self.assertIs(failed.test_case, self.test)
        self.assertIs(errored.test_case, self.test)
        # The sentinel came back: no "[None]" in the description.
        self.assertEqual(failed.id(), f"{self.test.id()} (i=1)")
        self.assertEqual(errored.id(), f"{self.test.id()} [named] (i=2, s='x')")
        self.assertIn("AssertionError: first", failure_text)
        self.assertIn("KeyError: 'k'", error_text)

    def test_subtest_without_params(self) -> None:
        self.replay(p.SubTestResult(None, {}, exc_info(AssertionError("x"))))
        [(failed, _text)] = self.result.failures
        self.assertEqual(failed.id(), f"{self.test.id()} (<subtest>)")

    def test_several_tests_add_up(self) -> None:
        tests = [make_test(f"test_{i}") for i in range(4)]
        outcomes: list[p.Outcome] = [
            p.Success(),
            p.Failure(exc_info(AssertionError())),
            p.Skip("s"),
            p.Success(),
        ]
        for test, outcome in zip(tests, outcomes, strict=True):
            replay_test(self.result, test, record(outcome))
        self.assertEqual(self.result.testsRun, 4)
        self.assertEqual(len(self.result.failures), 1)
        self.assertEqual(len(self.result.skipped), 1)
        self.assertIs(self.result.failures[0][0], tests[1])

    @unittest.skipUnless(
        hasattr(unittest.TestResult, "addDuration"), "durations need Python 3.12"
    )
    def test_duration(self) -> None:
        self.replay(p.Success(), duration=1.25)
        self.assertEqual(self.result.collectedDurations, [(str(self.test), 1.25)])

    def test_unknown_outcome(self) -> None:
        with self.assertRaises(TypeError):
            replay_outcome(self.result, self.test, "passed")  # type: ignore[arg-type]


class FixtureAndCrashTests(unittest.TestCase):
    def setUp(self) -> None:
        self.result, self.stream = text_result()

    def test_setupclass_error(self) -> None:
        description = "setUpClass (fake.mod.Sample)"
        replay_fixture(self.result, description, p.Error(exc_info(RuntimeError("no"))))
        self.assertEqual(self.result.testsRun, 0)
        [(holder, text)] = self.result.errors
        self.assertEqual(str(holder), description)
        self.assertEqual(holder.id(), description)
        self.assertIn("RuntimeError: no", text)
        self.result.printErrors()
        self.assertIn(f"ERROR: {description}", self.stream.getvalue())

    def test_setupclass_skip(self) -> None:
        description = "setUpClass (fake.mod.Sample)"
        replay_fixture(self.result, description, p.Skip("no database"))
        [(holder, reason)] = self.result.skipped
        self.assertEqual(str(holder), description)
        self.assertEqual(reason, "no database")
        self.assertTrue(self.result.wasSuccessful())

    def test_replay_error(self) -> None:
        test = make_test()
        crash = WorkerCrashed(
            "The worker running fake.mod.Sample.test_it was killed by SIGKILL."
        )
        replay_error(self.result, test, crash)
        self.assertEqual(self.result.testsRun, 1)
        [(errored, text)] = self.result.errors
        self.assertIs(errored, test)
        self.assertIn(
            "WorkerCrashed: The worker running fake.mod.Sample.test_it was killed "
            "by SIGKILL.",
            text,
        )
        self.assertIn("... ERROR", self.stream.getvalue())

    def test_replay_fixture_error(self) -> None:
        description = "tearDownClass (fake.mod.Sample)"
        crash = WorkerCrashed(f"The worker running {description} exited with code 1.")
        replay_fixture_error(self.result, description, crash)
        self.assertEqual(self.result.testsRun, 0)
        [(holder, text)] = self.result.errors
        self.assertEqual(str(holder), description)
        self.assertIn(f"WorkerCrashed: The worker running {description}", text)


class BufferedFixtureTests(unittest.TestCase):
    """With --buffer, fixture outcomes are formatted while output is buffered.

    A buffered result reads ``sys.stdout.getvalue()`` to format an error;
    a real terminal's stdout has no such method.
    """

    def run_buffered(self, call: Any) -> tuple[Any, str]:
        raw = io.BytesIO()
        terminal = io.TextIOWrapper(raw, encoding="utf-8")
        self.assertFalse(hasattr(terminal, "getvalue"))
        with contextlib.redirect_stdout(terminal), contextlib.redirect_stderr(terminal):
            result, _stream = text_result()
            result.buffer = True
            call(result)
            self.assertIs(sys.stdout, terminal)
            terminal.flush()
        return result, raw.getvalue().decode()

    def test_fixture_error(self) -> None:
        description = "setUpClass (fake.mod.Sample)"
        result, shown = self.run_buffered(
            lambda r: replay_fixture(
                r, description, p.Error(exc_info(RuntimeError("no")))
            )
        )
        [(holder, text)] = result.errors
        self.assertEqual(str(holder), description)
        self.assertIn("RuntimeError: no", text)
        self.assertNotIn("Stdout:", text)
        self.assertEqual(shown, "")

    def test_fixture_skip(self) -> None:
        result, _shown = self.run_buffered(
            lambda r: replay_fixture(r, "setUpModule (fake.mod)", p.Skip("later"))
        )
        self.assertEqual([reason for _h, reason in result.skipped], ["later"])

    def test_parents_fixture_error(self) -> None:
        description = "tearDownModule (fake.mod)"
        result, _shown = self.run_buffered(
            lambda r: replay_fixture_error(
                r, description, WorkerCrashed("The worker running it hung.")
            )
        )
        [(holder, text)] = result.errors
        self.assertEqual(str(holder), description)
        self.assertIn("The worker running it hung.", text)

    def test_earlier_output_does_not_leak_into_a_fixture_error(self) -> None:
        def calls(result: Any) -> None:
            replay_test(
                result,
                make_test(),
                record(
                    p.Failure(exc_info(AssertionError())), buffered_stdout="earlier\n"
                ),
            )
            replay_fixture(
                result, "tearDownClass (fake.mod.Sample)", p.Error(exc_info(OSError()))
            )

        result, shown = self.run_buffered(calls)
        self.assertIn("Stdout:\nearlier", result.failures[0][1])
        [(_holder, text)] = result.errors
        self.assertNotIn("earlier", text)
        self.assertEqual(shown.count("earlier"), 1)


class EventLog(unittest.TextTestResult):
    """Notes the order of startTest, writes to stdout, outcomes, stopTest."""

    events: list[str]

    def startTest(self, test: Any) -> None:
        self.events.append("start")
        super().startTest(test)

    def stopTest(self, test: Any) -> None:
        self.events.append("stop")
        super().stopTest(test)

    def addFailure(self, test: Any, err: Any) -> None:
        self.events.append("failure")
        super().addFailure(test, err)


class LoggingStream(io.StringIO):
    def __init__(self, events: list[str], name: str) -> None:
        super().__init__()
        self.events = events
        self.name = name

    def write(self, s: str) -> int:
        self.events.append(f"{self.name}:{s}")
        return super().write(s)


class OutputTests(unittest.TestCase):
    def test_output_is_written_inside_the_test(self) -> None:
        events: list[str] = []
        result, _stream = text_result(verbosity=0, cls=EventLog)
        result.events = events
        out, err = LoggingStream(events, "out"), LoggingStream(events, "err")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            replay_test(
                result,
                make_test(),
                record(
                    p.Failure(exc_info(AssertionError())),
                    stdout=b"printed\n",
                    stderr=b"warned\n",
                ),
            )
        self.assertEqual(
            events, ["start", "out:printed\n", "err:warned\n", "failure", "stop"]
        )

    def replay_buffered(self, outcome: p.Outcome) -> tuple[Any, str]:
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            # The result remembers the real stdout when it is made.
            result, _stream = text_result()
            result.buffer = True
            replay_test(
                result,
                make_test(),
                record(
                    outcome,
                    buffered_stdout="hello from the test\n",
                    buffered_stderr="a warning\n",
                ),
            )
        return result, captured.getvalue()

    def test_buffered_failure_shows_output(self) -> None:
        result, shown = self.replay_buffered(p.Failure(exc_info(AssertionError("x"))))
        [(_test, text)] = result.failures
        self.assertIn("Stdout:\nhello from the test", text)
        self.assertIn("Stderr:\na warning", text)
        self.assertIn("Stdout:\nhello from the test", shown)

    def test_buffered_error_shows_output(self) -> None:
        result, shown = self.replay_buffered(p.Error(exc_info(ValueError("x"))))
        [(_test, text)] = result.errors
        self.assertIn("Stdout:\nhello from the test", text)
        self.assertIn("hello from the test", shown)

    def test_buffered_success_discards_output(self) -> None:
        result, shown = self.replay_buffered(p.Success())
        self.assertTrue(result.wasSuccessful())
        self.assertEqual(shown, "")
        self.assertEqual(result.testsRun, 1)

    def test_unbuffered_output_goes_to_stdout(self) -> None:
        captured = io.StringIO()
        result, stream = text_result()
        with contextlib.redirect_stdout(captured):
            replay_test(result, make_test(), record(p.Success(), stdout=b"plain\n"))
        self.assertEqual(captured.getvalue(), "plain\n")
        self.assertNotIn("plain", stream.getvalue())


class DebugSQLTests(unittest.TestCase):
    def setUp(self) -> None:
        logger = logging.getLogger("django.db.backends")
        self.addCleanup(logger.setLevel, logger.level)

    def test_sql_goes_to_the_debug_stream(self) -> None:
        result, stream = text_result(cls=DebugSQLTextTestResult)
        sql = "(0.001) SELECT 1 FROM fake_table; args=()\n"
        replay_test(
            result,
            make_test(),
            record(p.Failure(exc_info(AssertionError("x"))), sql=sql),
        )
        [(_test, _text, failure_sql)] = result.failures
        self.assertEqual(failure_sql, sql)
        self.assertIn("SELECT 1 FROM fake_table", stream.getvalue())

    def test_no_sql_leaves_the_stream_empty(self) -> None:
        result, _stream = text_result(cls=DebugSQLTextTestResult)
        replay_test(result, make_test(), record(p.Error(exc_info(ValueError()))))
        [(_test, _text, error_sql)] = result.errors
        self.assertEqual(error_sql, "")

    def test_sql_without_debug_stream_is_ignored(self) -> None:
        result, stream = text_result()
        replay_test(result, make_test(), record(p.Success(), sql="SELECT 2"))
        self.assertTrue(result.wasSuccessful())
        self.assertNotIn("SELECT 2", stream.getvalue())


class FixtureAfterUnexpectedSuccessTests(unittest.TestCase):
    """3.11's addUnexpectedSuccess leaves _newline False; a fixture error
    replayed next must still print its description, not a bare status."""

    def test_fixture_line_keeps_its_description(self) -> None:
        result, stream = text_result(verbosity=2)
        replay_test(result, make_test(), record(p.UnexpectedSuccess()))
        replay_fixture(
            result, "setUpClass (fake.mod.Broken)", p.Error(exc_info(ValueError("x")))
        )
        lines = stream.getvalue().splitlines()
        if sys.version_info < (3, 11):
            # 3.10's TextTestResult writes a bare status for a fixture's
            # error, serially too: replay prints what unittest prints.
            self.assertEqual(lines[-1], "ERROR")
            return
        self.assertIn("setUpClass (fake.mod.Broken) ... ERROR", lines)
        self.assertNotIn("ERROR", lines)


@unittest.skipIf(
    sys.version_info < (3, 11),
    "NamedSkips is used on 3.12.0-3.12.1 only and works through 3.11's "
    "TextTestResult._newline, which 3.10 does not have",
)
class NamedSkipsTests(unittest.TestCase):
    def result(self) -> tuple[Any, io.StringIO]:
        from concurrent_runner.reports.skips import NamedSkips

        stream = io.StringIO()
        cls = type("Result", (NamedSkips, unittest.TextTestResult), {})
        runner_stream = unittest.runner._WritelnDecorator(stream)  # type: ignore[attr-defined]
        return cls(runner_stream, descriptions=True, verbosity=2), stream

    def test_a_skip_that_never_started_is_named_after_an_expected_failure(self):
        # What Python 3.12.0-3.12.1 do with a @skip test: addSkip, no startTest.
        result, stream = self.result()
        before, skipped = make_test("test_a"), make_test("test_b")
        result.startTest(before)
        result.addExpectedFailure(before, exc_info(AssertionError("x")))
        result.stopTest(before)
        replay_test(
            result,
            skipped,
            p.TestRecord(0, started=False, outcomes=[p.Skip("why")]),
        )
        lines = stream.getvalue().splitlines()
        self.assertEqual(lines[-1], f"{skipped} ... skipped 'why'")

    def test_a_started_skip_is_named_once(self):
        result, stream = self.result()
        test = make_test("test_c")
        result.startTest(test)
        result.addSkip(test, "later")
        self.assertEqual(stream.getvalue(), f"{test} ... skipped 'later'\n")


class WrittenOutputTests(unittest.TestCase):
    """The parent writes what a worker caught as bytes, to real streams and
    to stand-ins, and no stream it writes to can stop the run."""

    def real_stream(self, errors: str = "strict") -> tuple[Any, io.BytesIO]:
        raw = io.BytesIO()
        return io.TextIOWrapper(raw, encoding="utf-8", errors=errors), raw

    def test_bytes_reach_a_strict_stdout_as_they_are(self) -> None:
        # PYTHONIOENCODING=utf-8:strict; the worker's stdout was as strict,
        # so these bytes came from os.write or sys.stdout.buffer.
        stdout, raw = self.real_stream()
        result, _stream = text_result()
        with contextlib.redirect_stdout(stdout):
            replay_test(result, make_test(), record(p.Success(), stdout=b"<\xff>\n"))
        stdout.flush()
        self.assertEqual(raw.getvalue(), b"<\xff>\n")
        self.assertTrue(result.wasSuccessful())

    def test_a_text_stand_in_gets_the_text_the_test_printed(self) -> None:
        captured = io.StringIO()
        result, _stream = text_result()
        with contextlib.redirect_stdout(captured):
            replay_test(result, make_test(), record(p.Success(), stdout=b"<\xff>\n"))
        # As the worker's surrogateescape stdout encoded "<\udcff>".
        self.assertEqual(captured.getvalue(), "<\udcff>\n")

    def test_buffered_text_a_stream_cannot_encode_is_escaped(self) -> None:
        stdout, raw = self.real_stream()
        result, _stream = text_result()
        with contextlib.redirect_stdout(stdout):
            replay_test(
                result, make_test(), record(p.Success(), buffered_stdout="<\udcff>\n")
            )
        stdout.flush()
        self.assertEqual(raw.getvalue(), b"<\\udcff>\n")

    def test_with_buffer_direct_output_is_shown_and_printed_output_held(self) -> None:
        stdout, raw = self.real_stream()
        with contextlib.redirect_stdout(stdout):
            result, _stream = text_result()  # remembers the real stdout
            result.buffer = True
            replay_test(
                result,
                make_test(),
                record(
                    p.Failure(exc_info(AssertionError("x"))),
                    stdout=b"os.write\n",
                    buffered_stdout="print\n",
                ),
            )
        stdout.flush()
        [(_test, text)] = result.failures
        self.assertIn("Stdout:\nprint\n", text)
        self.assertNotIn("os.write", text)
        shown = raw.getvalue().decode()
        self.assertTrue(shown.startswith("os.write\n"), shown)
        self.assertIn("Stdout:\nprint", shown)  # unittest's mirror of a failure

    def test_unit_output_goes_straight_to_stdout_and_stderr(self) -> None:
        stdout, out_raw = self.real_stream()
        stderr, err_raw = self.real_stream()
        result, _stream = text_result()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            replay_output(result, b"setUpClass\n", b"tearDownClass\n")
        stdout.flush()
        stderr.flush()
        self.assertEqual(out_raw.getvalue(), b"setUpClass\n")
        self.assertEqual(err_raw.getvalue(), b"tearDownClass\n")

    def test_a_fixture_error_shows_what_the_buffer_held(self) -> None:
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            result, _stream = text_result()
            result.buffer = True
            replay_fixture(
                result,
                "setUpClass (fake.mod.Sample)",
                p.Error(exc_info(RuntimeError("no"))),
                buffered_stdout="in setUpClass\n",
            )
        [(_holder, text)] = result.errors
        self.assertIn("Stdout:\nin setUpClass", text)


class BrokenStdoutTests(unittest.TestCase):
    """A stdout that fails: said once on stderr, and replay goes on."""

    def pipe(self, *, reader_open: bool) -> tuple[Any, int]:
        reading, writing = os.pipe()
        stdout = io.TextIOWrapper(io.FileIO(writing, "w"), encoding="utf-8")
        self.addCleanup(stdout.close)
        if reader_open:
            self.addCleanup(os.close, reading)
        else:
            os.close(reading)
        return stdout, reading

    def replay_two(self, stdout: Any) -> tuple[Any, str]:
        stderr = io.StringIO()
        result, _stream = text_result()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            replay_test(result, make_test("test_a"), record(p.Success(), stdout=b"a\n"))
            replay_test(
                result,
                make_test("test_b"),
                record(p.Failure(exc_info(AssertionError())), stdout=b"b\n"),
            )
        return result, stderr.getvalue()

    def test_a_closed_pipe(self) -> None:
        stdout, _reading = self.pipe(reader_open=False)
        result, said = self.replay_two(stdout)
        self.assertEqual(result.testsRun, 2)
        self.assertEqual(len(result.failures), 1)
        self.assertEqual(said.count("Could not write a test's output"), 1, said)
        self.assertIn("BrokenPipeError", said)
        stdout.flush()  # nothing of ours left in Python's buffer

    def test_a_full_non_blocking_pipe_is_waited_for(self) -> None:
        stdout, reading = self.pipe(reader_open=True)
        os.set_blocking(stdout.fileno(), False)
        data = bytes(range(256)) * 4096  # 1 MiB: many times a pipe's size
        got = bytearray()

        def drain() -> None:
            while len(got) < len(data):
                time.sleep(0.001)  # slower than the writer
                got.extend(os.read(reading, 65536))

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        result, _stream = text_result()
        stderr = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            replay_test(result, make_test(), record(p.Success(), stdout=data))
        thread.join(BOUND)
        self.assertFalse(thread.is_alive())
        self.assertEqual(bytes(got), data)
        self.assertEqual(stderr.getvalue(), "")

    def test_a_pipe_that_stays_full_is_given_up_on(self) -> None:
        stdout, _reading = self.pipe(reader_open=True)
        os.set_blocking(stdout.fileno(), False)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(stdout.fileno(), b"x" * 65536)
        with mock.patch("concurrent_runner.parallel.replay.WRITE_TIMEOUT", 0.05):
            result, said = self.replay_two(stdout)
        self.assertEqual(result.testsRun, 2)
        self.assertEqual(said.count("Could not write a test's output"), 1, said)
        self.assertIn("TimeoutError", said)


class WorkerTracebackTests(unittest.TestCase):
    def test_replayed_tracebacks_have_no_misplaced_markers(self) -> None:
        import pickle

        from concurrent_runner.parallel.replay import WorkerTracebacks

        def fails() -> None:
            values = {"a": 1}
            assert values["a"] + values["a"] == 3, "wrong sum"

        try:
            fails()
        except AssertionError:
            err = p.portable_exc_info(sys.exc_info())  # type: ignore[arg-type]
        travelled = pickle.loads(pickle.dumps(err))
        cls = type("Result", (WorkerTracebacks, unittest.TextTestResult), {})
        result = cls(unittest.runner._WritelnDecorator(io.StringIO()), True, 0)  # type: ignore[attr-defined]
        test = make_test()
        replay_test(result, test, p.TestRecord(0, [p.Failure(travelled)]))
        [(_test, text)] = result.failures
        self.assertIn('assert values["a"] + values["a"] == 3, "wrong sum"', text)
        self.assertIn("AssertionError: wrong sum", text)
        self.assertNotRegex(text, r"(?m)^ +\^+ *$")
