"""JUnit XML and progress lines, without a run."""

from __future__ import annotations

import contextlib
import io
import os
import unittest
import xml.etree.ElementTree as ET
from typing import Any
from unittest import mock

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.replay import replay_test
from concurrent_runner.planning.groups import Strategy, Unit
from concurrent_runner.reports.junit import JUnitRecording, JUnitReport
from concurrent_runner.reports.progress import Progress

#: What the JUnit schema CI systems read (Jenkins' junit-10.xsd, which
#: GitLab and GitHub reporters follow) allows inside a <testcase>.
CASE_CHILDREN = {"skipped", "error", "failure", "system-out", "system-err"}


def check_junit_schema(test: unittest.TestCase, xml: str) -> ET.Element:
    """The structural rules of the JUnit schema, checked one by one."""
    root = ET.fromstring(xml)
    test.assertEqual(root.tag, "testsuites")
    suites = list(root)
    test.assertTrue(suites)
    for suite in suites:
        test.assertEqual(suite.tag, "testsuite")
        for attr in ("name", "tests", "failures", "errors", "skipped", "time"):
            test.assertIn(attr, suite.attrib)
        cases = suite.findall("testcase")
        test.assertEqual(int(suite.get("tests")), len(cases))
        for kind, attr in (
            ("failure", "failures"),
            ("error", "errors"),
            ("skipped", "skipped"),
        ):
            counted = sum(1 for c in cases if _first_problem(c) == kind)
            test.assertEqual(int(suite.get(attr)), counted, attr)
        float(suite.get("time"))
        for case in cases:
            test.assertTrue(case.get("name") is not None and case.get("classname"))
            float(case.get("time"))
            children = [child.tag for child in case]
            test.assertLessEqual(set(children), CASE_CHILDREN)
            test.assertLessEqual(sum(t in ("failure", "error") for t in children), 1)
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    test.assertIn("message", child.attrib)
    return root


def _first_problem(case: ET.Element) -> str | None:
    for tag in ("error", "failure", "skipped"):
        if case.find(tag) is not None:
            return tag
    return None


def run_sample(buffer: bool = False) -> tuple[JUnitReport, Any]:
    class Sample(unittest.TestCase):
        def test_ok(self) -> None:
            print("hello from test_ok")

        def test_fail(self) -> None:
            self.assertEqual(1, 2)

        def test_error(self) -> None:
            raise KeyError("k\x1b[31m")

        @unittest.skip("later")
        def test_skip(self) -> None:
            pass

        def test_subtests(self) -> None:
            for i in range(3):
                with self.subTest(i=i):
                    self.assertLess(i, 1)

        @unittest.expectedFailure
        def test_expected(self) -> None:
            self.fail("expected")

        @unittest.expectedFailure
        def test_unexpected(self) -> None:
            pass

    class BrokenClass(unittest.TestCase):
        @classmethod
        def setUpClass(cls) -> None:
            raise RuntimeError("class broke")

        def test_never(self) -> None:
            pass

    report = JUnitReport()
    cls = type("R", (JUnitRecording, unittest.TextTestResult), {"junit": report})
    result = cls(unittest.runner._WritelnDecorator(io.StringIO()), True, 0)  # type: ignore[attr-defined]
    result.buffer = buffer
    suite = unittest.TestSuite()
    loader = unittest.defaultTestLoader
    suite.addTests(loader.loadTestsFromTestCase(Sample))
    suite.addTests(loader.loadTestsFromTestCase(BrokenClass))
    result.startTestRun()
    with contextlib.redirect_stdout(io.StringIO()):  # test_ok prints
        suite.run(result)
    result.stopTestRun()
    return report, result


class JUnitTests(unittest.TestCase):
    def test_valid_and_counted(self) -> None:
        report, _ = run_sample()
        root = check_junit_schema(self, report.to_xml())
        suite = root.find("testsuite")
        assert suite is not None
        self.assertEqual(
            (
                suite.get("tests"),
                suite.get("failures"),
                suite.get("errors"),
                suite.get("skipped"),
            ),
            ("8", "3", "2", "1"),
        )

    def test_outcomes_per_case(self) -> None:
        report, _ = run_sample()
        outcome = {
            c.get("name"): _first_problem(c)
            for c in ET.fromstring(report.to_xml()).iter("testcase")
        }
        self.assertEqual(
            outcome,
            {"test_ok": None, "test_fail": "failure", "test_error": "error",
             "test_skip": "skipped", "test_subtests": "failure", "test_expected": None,
             "test_unexpected": "failure", "setUpClass": "error"},
        )  # fmt: skip

    def test_failure_text_type_and_message(self) -> None:
        root = ET.fromstring(run_sample()[0].to_xml())
        fail = next(c for c in root.iter("testcase") if c.get("name") == "test_fail")
        failure = fail.find("failure")
        assert failure is not None
        self.assertEqual(failure.get("type"), "AssertionError")
        self.assertEqual(failure.get("message"), "1 != 2")
        self.assertIn("Traceback (most recent call last)", failure.text or "")
        subtests = next(
            c for c in root.iter("testcase") if c.get("name") == "test_subtests"
        )
        self.assertEqual((subtests.find("failure").text or "").count("Traceback"), 2)  # type: ignore[union-attr]
        broken = next(c for c in root.iter("testcase") if c.get("name") == "setUpClass")
        self.assertTrue(broken.get("classname", "").endswith("BrokenClass"))

    def test_control_characters_are_escaped(self) -> None:
        xml = run_sample()[0].to_xml()
        self.assertNotIn("\x1b", xml)
        self.assertIn("\\x1b[31m", xml)

    def test_buffered_output_is_kept(self) -> None:
        root = ET.fromstring(run_sample(buffer=True)[0].to_xml())
        ok = next(c for c in root.iter("testcase") if c.get("name") == "test_ok")
        self.assertEqual(ok.findtext("system-out"), "hello from test_ok\n")


class ReplayedJUnitTests(unittest.TestCase):
    """A worker's record: what reached its fd 1 and 2 (bytes), then what
    --buffer held, and its duration."""

    def replay(self, record: Any, buffer: bool = False) -> ET.Element:
        class Sample(unittest.TestCase):
            def test_it(self) -> None:
                pass

        report = JUnitReport()
        cls = type("R", (JUnitRecording, unittest.TextTestResult), {"junit": report})
        # What reached fd 1 and 2 is echoed, --buffer or not, as serially.
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            result = cls(unittest.runner._WritelnDecorator(io.StringIO()), True, 0)  # type: ignore[attr-defined]
            result.buffer = buffer
            replay_test(result, Sample("test_it"), record)
        root = check_junit_schema(self, report.to_xml())
        return next(root.iter("testcase"))

    def test_bytes_and_buffered_text(self) -> None:
        case = self.replay(
            p.TestRecord(
                0,
                [p.Success()],
                duration=1.5,
                stdout=b"fd 1 \xff\n",
                stderr=b"fd 2\n",
                buffered_stdout="printed\n",
            ),
            buffer=True,
        )
        self.assertEqual(case.findtext("system-out"), "fd 1 \\xff\nprinted\n")
        self.assertEqual(case.findtext("system-err"), "fd 2\n")
        self.assertEqual(case.get("time"), "1.500")

    def test_a_skip_that_never_started_has_no_time_of_its_own(self) -> None:
        case = self.replay(p.TestRecord(0, [p.Skip("why")], started=False))
        self.assertLess(float(case.get("time", "nan")), 0.5)
        self.assertIsNotNone(case.find("skipped"))


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ProgressTests(unittest.TestCase):
    UNITS = [
        Unit(f"app.T{i}", None, Strategy.FREE, [f"app.T{i}"], [i]) for i in range(3)
    ]
    IDS = ["app.T0.test", "app.T1.test", "app.T2.test"]

    @staticmethod
    def record(index: int, *outcomes: Any) -> p.TestRecord:
        return p.TestRecord(index, list(outcomes))

    def progress(self, stream: Any, verbosity: int = 1) -> tuple[Progress, Clock]:
        clock = Clock()
        progress = Progress(
            stream,
            self.UNITS,
            verbosity=verbosity,
            estimates=[2.0, 1.0, 1.0],
            test_ids=self.IDS,
            clock=clock,
        )
        return progress, clock

    def test_a_log_gets_a_line_per_interval_a_heartbeat_and_a_last_one(self) -> None:
        stream = io.StringIO()
        progress, clock = self.progress(stream, verbosity=2)
        progress.unit_started(1, 0, "shared")
        progress.unit_started(2, 1, "shared")
        clock.now = 1.0
        progress.test_done(2, self.record(1, p.Success()))
        progress.unit_ended(2, 1, "passed")
        progress.unit_finished(1)  # within LOG_INTERVAL of the start: no line
        self.assertEqual(stream.getvalue(), "")
        clock.now = 31.0
        progress.tick(clock.now)  # a heartbeat while T0 runs
        clock.now = 32.0
        progress.tick(clock.now)
        error = AssertionError("no")
        progress.test_done(1, self.record(0, p.Failure((AssertionError, error, None))))
        progress.test_done(
            1, self.record(2, p.ExpectedFailure((ValueError, error, None)))
        )
        progress.unit_ended(1, 0, "failed")
        progress.unit_finished(0)
        progress.unit_finished(2)
        progress.run_ended()
        lines = stream.getvalue().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(
            lines[0],
            "[1/3 tests | 1 passed, 0 failed | 31.0s, about 93s left | running: T0]",
        )
        # An expected failure is counted as one, not as passed.
        self.assertEqual(
            lines[1],
            "[3/3 tests | 1 passed, 1 failed, 1 expected failure | 32.0s]",
        )

    def test_a_log_does_not_repeat_the_last_units_line_at_the_end(self) -> None:
        stream = io.StringIO()
        progress, clock = self.progress(stream, verbosity=2)
        for unit in range(3):
            progress.unit_started(1, unit, "shared")
            progress.test_done(1, self.record(unit, p.Success()))
            progress.unit_ended(1, unit, "passed")
            clock.now += 20.0
            progress.unit_finished(unit)  # a line every LOG_INTERVAL
        lines = stream.getvalue().splitlines()
        self.assertEqual(lines[-1], "[3/3 tests | 3 passed, 0 failed | 60.0s]")
        progress.run_ended()
        self.assertEqual(stream.getvalue().splitlines(), lines)

    def test_a_terminal_gets_one_line_redrawn_in_place(self) -> None:
        stream = FakeTTY()
        progress, clock = self.progress(stream)
        progress.unit_started(1, 0, "shared")
        self.assertEqual(
            stream.getvalue(),
            "\r\x1b[K\x1b[2m[0/3 tests | 0 passed, 0 failed | 0.0s | running: T0]"
            "\x1b[0m",
        )
        # What the run reports makes way for it; a failure is named on its
        # own line at -v 1 (no dots); then the line comes back.
        stream.seek(0)
        stream.truncate()
        progress.reporting(True)
        error = AssertionError("no")
        progress.test_done(1, self.record(0, p.Failure((AssertionError, error, None))))
        progress.reporting(False)
        text = stream.getvalue()
        self.assertTrue(text.startswith("\r\x1b[KFAIL: app.T0.test\n"), text)
        self.assertIn("[1/3 tests | 0 passed, 1 failed", text)
        stream.seek(0)
        stream.truncate()
        clock.now = 0.6
        progress.tick(clock.now)  # the clock moved: redrawn
        self.assertIn("0.6s", stream.getvalue())
        progress.run_ended()
        self.assertTrue(stream.getvalue().endswith("\r\x1b[K"))

    def test_a_terminal_of_no_reported_width_gets_the_whole_line(self) -> None:
        # A pseudo-terminal nobody sized: Python 3.10 reports 0 columns.
        unsized = os.terminal_size((0, 0))
        with mock.patch("shutil.get_terminal_size", return_value=unsized):
            progress, _clock = self.progress(FakeTTY())
            progress.unit_started(1, 0, "shared")
        self.assertIn("| running: T0]", progress.stream.getvalue())

    def test_nothing_at_verbosity_zero(self) -> None:
        for stream in (FakeTTY(), io.StringIO()):
            progress, clock = self.progress(stream, verbosity=0)
            progress.unit_started(1, 0, "shared")
            clock.now = 100.0
            progress.tick(clock.now)
            progress.unit_finished(0)
            progress.run_ended()
            self.assertEqual(stream.getvalue(), "")
