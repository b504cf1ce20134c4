"""End-to-end: a worker runs its tests as the serial run's process would.

Python 3.12.0 and 3.12.1 skip a ``@skip`` test without starting it,
which a worker must report as a serial run does (run those under that
interpreter: ``/path/to/python3.12.1 runtests.py tests.test_e2e_worker_setup``).
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from django.test import SimpleTestCase

from .e2e import manage

OURS = ("--parallel-groups", "2")
FRESH = {"E2E_FORK_WORKERS": "0"}


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
