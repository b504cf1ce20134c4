"""End-to-end: coverage counts code run only in workers and in call processes.

Needs coverage.py 7.10+ (``[run] patch``); .ci/run installs it, and in CI a
missing coverage fails this test instead of skipping it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.test import SimpleTestCase

from .e2e import E2E_PROJECT, run

CONFIG = """\
[run]
parallel = true
patch = subprocess, fork, _exit
source = covered
data_file = {data}/.coverage
"""
#: Without patches coverage follows neither forks nor call processes; the
#: workers are then fresh interpreters, which re-run `coverage run`.
PLAIN_CONFIG = "\n".join(
    line for line in CONFIG.splitlines() if not line.startswith("patch")
)


class CoverageTests(SimpleTestCase):
    def setUp(self):
        if importlib.util.find_spec("coverage") is None:
            if os.environ.get("CI"):
                self.fail("coverage is not installed; .ci/run installs it")
            self.skipTest("coverage is not installed")

    def coverage(self, *args: str, cwd: Path) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "coverage", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        return done.stdout

    def measure(self, config: str) -> str:
        """The report line of covered/code.py after a parallel run."""
        with tempfile.TemporaryDirectory() as tmp:
            rc = Path(tmp) / "coveragerc"
            rc.write_text(config.format(data=tmp))
            result = run(
                ["-m", "coverage", "run", f"--rcfile={rc}", "manage.py", "test",
                 "--noinput", "covered", "--parallel-groups", "2"],
                cwd=E2E_PROJECT,
            )  # fmt: skip
            self.assertEqual(result.returncode, 0, result.output)
            self.assertIn("on 2 worker processes", result.output)
            self.coverage("combine", f"--rcfile={rc}", cwd=Path(tmp))
            report = self.coverage("report", f"--rcfile={rc}", "-m", cwd=Path(tmp))
        return next(line for line in report.splitlines() if "code.py" in line)

    def test_workers_and_concurrent_calls_are_measured(self):
        # covered/code.py runs only in a worker (only_in_a_worker) and only
        # in a call process (only_in_a_call); the parent runs neither.
        line = self.measure(CONFIG)
        self.assertRegex(line, r"\s6\s+0\s+100%")

    def test_workers_are_measured_without_the_patch_line(self):
        # Only the two lines of only_in_a_call are missed.
        line = self.measure(PLAIN_CONFIG)
        self.assertRegex(line, r"\s6\s+2\s+67%\s+10-11$")
