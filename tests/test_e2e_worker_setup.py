"""End-to-end: a worker runs its tests as the serial run's process would.

Django's test-database creation marks tests (a backend's skips and expected
failures); a worker starts before the databases exist and must mark them
too. Python 3.12.0 and 3.12.1 skip a ``@skip`` test without starting it,
which a worker must report as a serial run does (run those under that
interpreter: ``/path/to/python3.12.1 runtests.py tests.test_e2e_worker_setup``).
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from django.test import SimpleTestCase, tag

from .e2e import manage

OURS = ("--parallel-groups", "2")
FRESH = {"E2E_FORK_WORKERS": "0"}


class FeatureMarksTests(SimpleTestCase):
    """A backend whose features skip one test and expect another to fail,
    applied as Django's own suite (and a backend's) runs its tests."""

    env = {"E2E_MARKS_BACKEND": "1", "RUNNING_DJANGOS_TEST_SUITE": "true"}

    def test_workers_apply_them_as_the_test_databases_were_made(self):
        serial = manage("marks", "-v", "2", env=self.env)
        self.assertEqual(serial.returncode, 0, serial.output)
        self.assertEqual(serial.summary, "OK (skipped=1, expected failures=1)")
        want = serial.statuses()
        self.assertEqual(
            want["marks.tests.Marked.test_skipped_by_the_features"],
            'skipped "the backend\'s features skip it"',
        )
        self.assertEqual(
            want["marks.tests.Marked.test_expected_to_fail_by_the_features"],
            "expected failure",
        )
        for name, env in (
            ("ours", self.env),
            ("ours, fresh interpreters", {**self.env, **FRESH}),
        ):
            with self.subTest(name):
                result = manage("marks", "-v", "2", *OURS, env=env)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertIn("on 2 worker processes", result.output)
                self.assertEqual(result.statuses(), want)
                self.assertEqual(result.summary, serial.summary)

    def test_not_without_the_variable(self):
        result = manage("marks", "-v", "2", *OURS, env={"E2E_MARKS_BACKEND": "1"})
        self.assertEqual(result.returncode, 1, result.output)
        self.assertEqual(
            result.statuses()["marks.tests.Marked.test_skipped_by_the_features"],
            "FAIL",
        )


@tag("any_database")
class SkippedFirstTests(SimpleTestCase):
    """A class whose first test is ``@skip``ped, and a skip after a slow
    test (1 s): the same report, and no skipped test gets another's time."""

    def junit(self, *args: str, env: dict[str, str] | None = None):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.xml"
            result = manage(
                "skipfirst", "-v", "2", "--junit-xml", str(path), *args, env=env
            )
            times = {
                case.get("name"): float(case.get("time", "nan"))
                for case in ET.parse(path).getroot().iter("testcase")
            }
        return result, times

    def test_same_report_as_a_serial_run(self):
        serial, _times = self.junit()
        self.assertEqual(serial.returncode, 1, serial.output)
        for name, env in (("ours", None), ("ours, fresh interpreters", FRESH)):
            with self.subTest(name):
                result, times = self.junit(*OURS, env=env)
                self.assertEqual(result.statuses(), serial.statuses(), result.output)
                self.assertEqual(result.summary, serial.summary)
                self.assertEqual(result.headers(), serial.headers())
                self.assertGreaterEqual(times["test_1_slow"], 1.0)
                # Not the slow test's second before it.
                self.assertLess(times["test_2_skipped"], 0.5)
