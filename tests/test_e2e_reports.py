"""End-to-end: a report path that cannot work is refused before the run; a
report that cannot be written at the end fails the run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.test import SimpleTestCase, tag

from .e2e import manage

PASSES = "reporting.tests.Passes"


@tag("any_database")
class ReportPathTests(SimpleTestCase):
    def test_bad_paths_are_refused_before_the_first_test(self):
        with tempfile.TemporaryDirectory() as tmp:
            for flag, value in (
                ("--junit-xml", str(Path(tmp) / "missing" / "junit.xml")),
                ("--timeline", tmp),
            ):
                for parallel in ((), ("--parallel-groups", "2")):
                    with self.subTest(flag=flag, value=value, parallel=parallel):
                        result = manage(
                            "reporting.tests.Passes", flag, value, *parallel
                        )
                        self.assertEqual(result.returncode, 2, result.output)
                        self.assertIn(f"error: argument {flag}: ", result.output)
                        self.assertNotIn("Creating test database", result.output)
                        self.assertNotIn("Ran ", result.output)

    def test_a_report_that_cannot_be_written_fails_the_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "reports"
            for parallel in ((), ("--parallel-groups", "2")):
                with self.subTest(parallel=parallel):
                    folder.mkdir()
                    result = manage(
                        "reporting",
                        "--junit-xml", str(folder / "junit.xml"),
                        "--timeline", str(folder / "timeline.html"),
                        *parallel,
                        env={"REPORT_FOLDER": str(folder)},
                    )  # fmt: skip
                    self.assertEqual(result.returncode, 1, result.output)
                    self.assertEqual(result.summary, "OK")
                    for what, name in (
                        ("JUnit XML report", "junit.xml"),
                        ("timeline", "timeline.html"),
                    ):
                        self.assertIn(
                            f"The {what} could not be written to "
                            f"{str(folder / name)!r}: [Errno 2]",
                            result.output,
                        )
                    self.assertIn("The run fails for it.", result.output)
