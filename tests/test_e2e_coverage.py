"""End-to-end: coverage.py counts what workers and concurrent calls run.

``covered/code.py`` has code that only a worker runs (``only_in_a_worker``)
and code that only a concurrent call runs (``only_in_a_call``); the test
process runs neither. Whatever the way the suite is started (``manage.py
test``, ``python -m django test --settings=...``, a ``runtests.py`` that
calls ``settings.configure()``), with forked or fresh-interpreter workers,
with no configuration at all or with the user's own, every line of it
counts, in the data file of the test process.

Needs coverage.py 7.10.4+; .ci/run installs it, and in CI a missing
coverage fails these tests instead of skipping them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from django.test import SimpleTestCase, tag

from .e2e import E2E_PROJECT, start

#: The suite of ``covered``, on 2 workers, in each way a suite is started.
STYLES = {
    "manage.py": ["manage.py", "test", "--noinput", "covered",
                  "--parallel-groups", "2"],
    "-m django": ["-m", "django", "test", "--noinput", "--settings=e2e_settings",
                  "covered", "--parallel-groups", "2"],
    "runtests.py": ["configured.py", "covered"],  # its second run: 2 workers
}  # fmt: skip
FORKED: dict[str, str] = {}
FRESH = {"E2E_FORK_WORKERS": "0"}

#: What coverage.py reports for covered/code.py when every line (and branch)
#: of it ran: 8 statements, none missed (with branches: 4, none partial).
ALL_LINES = r"\s8\s+0\s+100%$"
ALL_BRANCHES = r"\s8\s+0\s+4\s+0\s+100%$"


class CoverageCase(SimpleTestCase):
    def setUp(self):
        if importlib.util.find_spec("coverage") is None:
            if os.environ.get("CI"):
                self.fail("coverage is not installed; .ci/run installs it")
            self.skipTest("coverage is not installed")
        self.tmp = Path(tempfile.mkdtemp(prefix="e2e-coverage-"))
        self.addCleanup(_rmtree, self.tmp)

    def coverage(self, *args: str) -> str:
        """``coverage ARGS`` on this test's data, with no configuration but
        the one the run had (``rc``), in the folder of the data file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
        env["COVERAGE_FILE"] = str(self.tmp / ".coverage")
        rc = self.tmp / "rc"
        done = subprocess.run(
            [sys.executable, "-m", "coverage", *args,
             *([f"--rcfile={rc}"] if rc.exists() else [])],
            cwd=self.tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        return done.stdout

    def measure(
        self,
        args: list[str],
        *,
        config: str | None = None,
        env: dict[str, str] | None = None,
    ) -> int:
        """Run ``coverage run ARGS`` on the e2e project; its test process's
        pid. Without ``config`` nothing configures coverage.py (only
        ``COVERAGE_FILE`` says where the data goes); else ``config`` is the
        file given as ``--rcfile``."""
        run_env = {
            "COVERED_PROCESSES": str(self.tmp / "processes"),
            "COVERAGE_FILE": "",
            "COVERAGE_RCFILE": "",
            **(env or {}),
        }
        argv = ["-m", "coverage", "run"]
        if config is None:
            run_env["COVERAGE_FILE"] = str(self.tmp / ".coverage")
        else:
            rc = self.tmp / "rc"
            rc.write_text(f"[run]\ndata_file = {self.tmp / '.coverage'}\n{config}\n")
            argv.append(f"--rcfile={rc}")
        started = start([*argv, *args], cwd=E2E_PROJECT, env=run_env)
        result = started.finish()
        self.assertEqual(result.returncode, 0, result.output)
        self.assertNotIn("could not be combined", result.output)
        return started.process.pid

    def data_files(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith(".cov"))

    def report(self, *args: str) -> dict[str, str]:
        """Every file of ``coverage report`` (relative to the e2e project)
        -> its line."""
        lines = {}
        for line in self.coverage("report", "-m", *args).splitlines():
            match = re.match(r"^(\S+\.py)\s", line)
            if match:
                name = match[1].split("/e2e_project/")[-1]
                lines[name] = line.rstrip()
        return lines

    def assert_all_counted(self, pattern: str = ALL_LINES) -> dict[str, str]:
        report = self.report("--include=*/covered/*")
        self.assertRegex(report.get("covered/code.py", ""), pattern, report)
        return report

    def workers_forked(self, parent: int) -> set[bool]:
        """For each test that ran: was its process forked (by the fork
        server), not started by the test process itself?"""
        lines = (self.tmp / "processes").read_text().splitlines()
        self.assertEqual(len(lines), 2, lines)
        return {int(line.split()[2]) != parent for line in lines}


@tag("any_database")
class NoConfigurationTests(CoverageCase):
    """``coverage run`` with nothing configured: one data file, every line."""

    def check(self, style: str, workers: dict[str, str]) -> None:
        parent = self.measure(STYLES[style], env=workers)
        self.assertEqual(self.workers_forked(parent), {workers is FORKED})
        # One data file, the test process's: nothing to combine.
        self.assertEqual(self.data_files(), [".coverage"])
        report = self.assert_all_counted()
        self.assertRegex(report["covered/tests.py"], r"\s0\s+100%$")

    def test_manage_py_forked(self):
        self.check("manage.py", FORKED)

    def test_manage_py_fresh(self):
        self.check("manage.py", FRESH)

    def test_django_module_forked(self):
        self.check("-m django", FORKED)

    def test_django_module_fresh(self):
        self.check("-m django", FRESH)

    def test_runtests_py_forked(self):
        self.check("runtests.py", FORKED)

    def test_runtests_py_fresh(self):
        self.check("runtests.py", FRESH)

    def test_concurrent_calls_of_an_in_process_run(self):
        # --parallel-groups 1: the test process runs the worker's side
        # itself; only the calls are other processes.
        self.measure(["manage.py", "test", "--noinput", "covered"])
        self.assertEqual(self.data_files(), [".coverage"])
        self.assert_all_counted()

    def test_concurrent_calls_under_djangos_runner(self):
        # Calls made under another test runner: the call server relays
        # coverage.py by itself. (Django's runner keeps SQLite in memory,
        # which calls cannot open: files.)
        sqlite = self.tmp / "sqlite"
        sqlite.mkdir()
        self.measure(
            ["manage.py", "test", "--noinput", "covered",
             "--testrunner", "django.test.runner.DiscoverRunner"],
            env={"SQLITE_DIR": str(sqlite), "SQLITE_TEST_FILES": "1"},
        )  # fmt: skip
        self.assertEqual(self.data_files(), [".coverage"])
        self.assert_all_counted()


@tag("any_database")
class UserConfigurationTests(CoverageCase):
    """The user's own settings apply in every process, as they would
    serially."""

    def test_parallel_and_combine(self):
        for workers in (FORKED, FRESH):
            with self.subTest(workers=workers):
                self.measure(STYLES["manage.py"], config="parallel = true", env=workers)
                # The test process's own parallel file holds the workers'
                # and the calls' data: that is all `coverage combine` sees.
                files = self.data_files()
                self.assertEqual(len(files), 1, files)
                self.assertRegex(files[0], r"^\.coverage\..+")
                self.coverage("combine")
                self.assertEqual(self.data_files(), [".coverage"])
                self.assert_all_counted()
                (self.tmp / ".coverage").unlink()

    def test_source_and_omit(self):
        self.measure(STYLES["-m django"], config="source = covered\nomit = */tests.py")
        report = self.assert_all_counted()
        # Only the source, less what is omitted, and nothing else at all.
        self.assertEqual(sorted(report), ["covered/__init__.py", "covered/code.py"])
        self.assertEqual(
            sorted(self.report()), ["covered/__init__.py", "covered/code.py"]
        )

    def test_branch(self):
        for style in ("manage.py", "runtests.py"):
            with self.subTest(style=style):
                self.measure(STYLES[style], config="branch = true\nsource = covered")
                self.assert_all_counted(ALL_BRANCHES)
                (self.tmp / ".coverage").unlink()

    def test_concurrency(self):
        # multiprocessing implies parallel (coverage.py's own rule).
        self.measure(
            STYLES["manage.py"],
            config="concurrency = thread,multiprocessing\nsource = covered",
            env=FRESH,
        )
        self.coverage("combine")
        self.assert_all_counted()

    def test_coverage_patches(self):
        # What the README advised before: coverage.py's own patches follow
        # the processes too; every process's data still counts, once.
        self.measure(
            STYLES["manage.py"],
            config="parallel = true\npatch = subprocess, fork, _exit\nsource = covered",
        )
        self.coverage("combine")
        self.assert_all_counted()


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
