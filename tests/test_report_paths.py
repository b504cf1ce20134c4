"""concurrent_runner.reports.writing: report paths checked before the run,
reports that cannot be written fail it, and the run directory goes anyway."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
from contextlib import redirect_stderr
from pathlib import Path
from unittest import mock

from django.test import SimpleTestCase
from django.test.runner import DiscoverRunner

from concurrent_runner.errors import ConfigurationError
from concurrent_runner.reports.writing import (
    check_report_path,
    report_path_argument,
    report_path_problem,
    write_reports,
)
from concurrent_runner.runner import Runner


class TempDirTestCase(SimpleTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="report-paths-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)


class PathProblemTests(TempDirTestCase):
    def test_a_file_in_an_existing_folder_is_fine(self) -> None:
        self.assertIsNone(report_path_problem("--junit-xml", self.dir / "r.xml"))
        (self.dir / "old.xml").write_text("replaced at the end")
        self.assertIsNone(report_path_problem("--junit-xml", self.dir / "old.xml"))

    def test_a_missing_folder_is_named(self) -> None:
        path = self.dir / "missing" / "r.xml"
        problem = report_path_problem("--junit-xml", path)
        self.assertEqual(
            problem,
            f"--junit-xml {str(path)!r}: the directory {str(path.parent)!r} does "
            f"not exist. Create it first, or write the report somewhere else.",
        )

    def test_a_folder_is_not_a_report(self) -> None:
        problem = report_path_problem("--timeline", self.dir)
        self.assertIn(f"--timeline {str(self.dir)!r} is a directory", problem)
        self.assertIn(repr(str(self.dir / "report.html")), problem)

    def test_a_file_as_the_folder(self) -> None:
        (self.dir / "file").write_text("")
        problem = report_path_problem("--timeline", self.dir / "file" / "t.html")
        self.assertIn("is not a directory", problem)

    def test_no_permission(self) -> None:
        with mock.patch("os.access", return_value=False):
            self.assertIn(
                "permission denied",
                report_path_problem("--junit-xml", self.dir / "r.xml"),
            )
            (self.dir / "ro.xml").write_text("")
            self.assertIn(
                "not writable", report_path_problem("--junit-xml", self.dir / "ro.xml")
            )

    def test_as_an_argparse_type(self) -> None:
        check = report_path_argument("--junit-xml")
        self.assertEqual(check(str(self.dir / "r.xml")), str(self.dir / "r.xml"))
        with self.assertRaisesRegex(argparse.ArgumentTypeError, "does not exist"):
            check(str(self.dir / "no" / "r.xml"))

    def test_the_runners_flags_are_checked_as_they_are_parsed(self) -> None:
        parser = argparse.ArgumentParser()
        Runner.add_arguments(parser)
        for flag in ("--junit-xml", "--timeline"):
            with (
                self.subTest(flag=flag),
                redirect_stderr(io.StringIO()) as err,
                self.assertRaises(SystemExit) as caught,
            ):
                parser.parse_args([flag, str(self.dir / "no" / "report")])
            self.assertEqual(caught.exception.code, 2)
            self.assertIn(f"argument {flag}: ", err.getvalue())
            self.assertIn("does not exist", err.getvalue())

    def test_a_script_is_refused_before_the_run(self) -> None:
        with self.assertRaisesRegex(ConfigurationError, "--junit-xml .* directory"):
            Runner(junit_xml=str(self.dir))
        with self.assertRaisesRegex(ConfigurationError, "--timeline .*does not"):
            Runner(timeline=str(self.dir / "no" / "t.html"))
        check_report_path("--timeline", None)


class Report:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.written: list[Path] = []

    def write(self, path: Path) -> None:
        self.written.append(path)
        if self.error is not None:
            raise self.error


class WriteTests(TempDirTestCase):
    def test_each_report_is_written_and_logged(self) -> None:
        logged: list[str] = []
        reports = [("timeline", Report(), self.dir / "t"), ("x", None, None)]
        self.assertEqual(write_reports(reports, logged.append), 0)
        self.assertEqual(logged, [f"Timeline written to {self.dir / 't'}"])

    def test_a_report_that_cannot_be_written_is_counted_and_said(self) -> None:
        broken = Report(FileNotFoundError(2, "No such file or directory"))
        fine = Report()
        err = io.StringIO()
        with redirect_stderr(err):
            unwritten = write_reports(
                [("timeline", broken, Path("/x/t")), ("JUnit", fine, Path("j"))],
                lambda line: None,
            )
        self.assertEqual(unwritten, 1)
        self.assertEqual(fine.written, [Path("j")])
        self.assertIn(
            "The timeline could not be written to '/x/t': [Errno 2] No such file "
            "or directory. The run fails for it.",
            err.getvalue(),
        )

    def test_a_bug_in_a_writer_is_raised_after_the_others(self) -> None:
        fine = Report()
        with self.assertRaisesRegex(RuntimeError, "bug"):
            write_reports(
                [("a", Report(RuntimeError("bug")), Path("a")), ("b", fine, Path("b"))],
                lambda line: None,
            )
        self.assertEqual(fine.written, [Path("b")])


class RunTestsTests(TempDirTestCase):
    """Runner.run_tests around DiscoverRunner's (replaced by a stand-in)."""

    def run_tests(self, runner: Runner, failures: int = 0) -> int:
        self.rundirs: list[Path] = []

        def stand_in(self_: Runner, labels: list[str], **kwargs: object) -> int:
            run = self_._run
            assert run is not None and run.rundir.is_dir()
            self.rundirs.append(run.rundir)
            return failures

        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CONCURRENT_RUNNER_WORKER", "CONCURRENT_RUNNER_CALL_SERVER")
        }
        with (
            mock.patch.dict(os.environ, environ, clear=True),
            mock.patch.object(DiscoverRunner, "run_tests", stand_in),
            redirect_stderr(io.StringIO()),
        ):
            return runner.run_tests([])

    def test_an_unwritable_report_fails_a_passing_run(self) -> None:
        folder = self.dir / "reports"
        folder.mkdir()
        runner = Runner(junit_xml=str(folder / "junit.xml"), verbosity=0)
        folder.rmdir()  # gone by the end of the run
        self.assertEqual(self.run_tests(runner), 1)
        self.assertFalse(self.rundirs[0].exists())

    def test_a_failed_run_keeps_its_count(self) -> None:
        runner = Runner(junit_xml=str(self.dir / "junit.xml"), verbosity=0)
        self.assertEqual(self.run_tests(runner, failures=3), 3)
        self.assertTrue((self.dir / "junit.xml").exists())

    def test_a_bug_in_a_writer_still_removes_the_run_directory(self) -> None:
        runner = Runner(timeline=str(self.dir / "t.html"), verbosity=0)
        with (
            mock.patch(
                "concurrent_runner.reports.timeline.Timeline.write",
                side_effect=RuntimeError("a bug in the writer"),
            ),
            self.assertRaisesRegex(RuntimeError, "a bug in the writer"),
        ):
            self.run_tests(runner)
        self.assertEqual(len(self.rundirs), 1)
        self.assertFalse(self.rundirs[0].exists())
