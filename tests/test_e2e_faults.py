"""End-to-end: workers that crash, hang, fail to start; Ctrl-C and SIGTERM.

Each run is bounded and must leave no process, no temporary file and (on
PostgreSQL and MariaDB) no test or clone database behind.
"""

from __future__ import annotations

import re
import signal
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase

from .e2e import (
    OUTCOMES_RAN,
    RAN,
    TIMEOUT,
    db_suffix,
    e2e_databases,
    manage,
    server_databases,
    start,
    start_manage,
)

PARALLEL = ("--parallel-groups", "2")


def wait_for_file(path: Path, running, timeout: float = TIMEOUT) -> None:
    """Until a test of the running suite has made ``path``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared:\n{running.output()}")
        time.sleep(0.05)


BOTH_MODES = (PARALLEL, ("--parallel-groups", "1"))


class LeavesNoDatabase(SimpleTestCase):
    """Base class; holds no tests of its own."""

    databases = {"default"}  # to list the server's databases

    def assert_no_test_databases(self):
        self.assertEqual(server_databases(connection, e2e_databases()), set())


class CrashTests(LeavesNoDatabase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.run_ = manage("faults", "-v", "2", "--group-timeout", "5", *PARALLEL)
        cls.out = cls.run_.output

    def test_every_test_is_accounted_for_and_the_run_fails(self):
        self.assertEqual(self.run_.returncode, 1, self.out)
        self.assertEqual(self.run_.ran, 17, self.out)
        self.assertEqual(self.run_.summary, "FAILED (errors=6)")
        self.assert_no_test_databases()

    def test_the_rest_of_a_crashed_unit_runs_in_a_replacement(self):
        statuses = self.run_.statuses()
        for cls in ("ExitCrash", "KillCrash", "SegfaultCrash", "InterruptRaised"):
            self.assertEqual(
                statuses.get(f"faults.tests.{cls}.test_c_after"), "ok", cls
            )
        self.assertEqual(statuses.get("faults.tests.Hang.test_b_after"), "ok")

    def test_crashes_name_the_test_and_how_the_worker_ended(self):
        for cls, how in (
            ("ExitCrash", "exited with code 3"),
            ("KillCrash", "was killed by SIGKILL"),
            ("SegfaultCrash", "was killed by SIGSEGV"),
        ):
            self.assertIn(
                f"The worker running faults.tests.{cls}.test_b_crash {how}", self.out
            )
        # faulthandler's report of the segfault comes with it.
        self.assertIn("Fatal Python error: Segmentation fault", self.out)

    def test_keyboard_interrupt_and_system_exit_are_errors_of_their_test(self):
        self.assertIn("ERROR: test_b_crash (faults.tests.InterruptRaised", self.out)
        self.assertIn("KeyboardInterrupt: raised by the test", self.out)
        self.assertIn("ERROR: test_b_crash (faults.tests.SystemExitRaised", self.out)
        self.assertIn("SystemExit: 2", self.out)

    def test_group_timeout_shows_where_the_test_was_stuck(self):
        self.assertIn(
            "The worker running faults.tests.Hang.test_a_hangs was stopped: its "
            "unit ran longer than --group-timeout (5s). Where it was:",
            self.out,
        )
        self.assertRegex(self.out, r'faults/tests\.py", line \d+ in test_a_hangs')


class StartupAndImportTests(LeavesNoDatabase):
    def test_a_worker_that_cannot_start_stops_the_run_with_its_error(self):
        # Only a fresh interpreter loads the settings again; a forked worker
        # has them already.
        result = manage(
            "multidb",
            *PARALLEL,
            env={"BREAK_WORKER": "1", "E2E_FORK_WORKERS": "0"},
            timeout=90,
        )
        self.assertEqual(result.returncode, 1, result.output)
        self.assertIn("before it could run tests", result.output)
        self.assertIn("e2e_settings refuses to load in a worker", result.output)
        self.assertNotRegex(result.output, r"Ran \d+ test")
        self.assert_no_test_databases()

    def test_a_failed_system_check_stops_the_run_before_any_clone(self):
        for args in ((), PARALLEL):
            with self.subTest(args=args):
                result = manage("multidb", *args, env={"BREAK_CHECKS": "1"})
                self.assertEqual(result.returncode, 1, result.output)
                self.assertIn("(e2e.E001) BREAK_CHECKS is set", result.output)
                self.assertNotIn("Cloning test database", result.output)
                self.assertNotRegex(result.output, r"Ran \d+ test")
                self.assert_no_test_databases()

    def test_a_module_that_fails_to_import_only_in_workers(self):
        result = manage(
            "importfail", "multidb", "-v", "2", *PARALLEL, env={"E2E_FORK_WORKERS": "0"}
        )
        self.assertEqual(result.returncode, 1, result.output)
        self.assertEqual(result.ran, 9)
        statuses = result.statuses()
        self.assertEqual(statuses["importfail.tests.OnlyInParent.test_one"], "ERROR")
        self.assertIn("only the parent can import importfail.tests", result.output)
        # -v 2 says which kind of worker ran, and why.
        self.assertIn(
            "Workers are fresh interpreters: CONCURRENT_RUNNER_FORK_WORKERS is False.",
            result.output,
        )
        self.assertEqual(
            [s for t, s in statuses.items() if t.startswith("multidb")], ["ok"] * 7
        )

    def test_unpicklable_failure_does_not_abort_the_run(self):
        result = manage("outcomes", *PARALLEL)
        self.assertEqual(result.ran, OUTCOMES_RAN)
        self.assertIn("Unpicklable raised by test_unpicklable", result.output)


class SignalTests(LeavesNoDatabase):
    """Ctrl-C and SIGTERM: children end, clones and run directory go."""

    def assert_interrupted(self, result, sig):
        """Ended as an interrupted run: one line, the shell's exit code for
        the signal (130, 143), never a traceback."""
        self.assertIn(
            f"RunInterrupted: The run was interrupted by {sig.name}.", result.output
        )
        self.assertEqual(result.returncode, 128 + sig, result.output)
        self.assertNotIn("KeyboardInterrupt", result.output)

    def interrupt(self, sig):
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            running = start_manage(
                "stopping", "-v", "2", "--junit-xml", str(junit), *PARALLEL
            )
            running.wait_for(" ... ok")  # a first result has come back
            running.send(sig)
            result = running.finish(timeout=30)
            names = [case.get("name") for case in ET.parse(junit).iter("testcase")]
        self.assert_interrupted(result, sig)
        self.assert_no_test_databases()
        # Well formed: every test case has a name (no pseudo-test for the
        # interrupt), and what ran is in it.
        self.assertTrue(names)
        self.assertTrue(all(names), names)
        return result

    def test_ctrl_c_stops_workers_and_reports_what_finished(self):
        result = self.interrupt(signal.SIGINT)
        self.assertIn("Interrupted by SIGINT.", result.output)
        self.assertRegex(result.output, r"\d+ selected test\(s\) did not run\.")
        self.assertLess(result.ran, 22)

    def test_sigterm_does_the_same(self):
        result = self.interrupt(signal.SIGTERM)
        self.assertIn("Interrupted by SIGTERM.", result.output)
        self.assertLess(result.ran, 22)

    def test_the_tests_that_were_running_are_named_as_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            marker = Path(tmp) / "started"
            running = start_manage(
                "faults.waiting",
                "-v",
                "2",
                *PARALLEL,
                env={"WAITING_MARKER": str(marker)},
            )
            wait_for_file(marker, running)
            running.send(signal.SIGINT)
            result = running.finish(timeout=30)
        self.assert_interrupted(result, signal.SIGINT)
        # On a busy machine Quick may not have reported yet: then it was
        # running too, and is named with test_waits.
        named = re.search(
            r"These tests were running \(reported as errors\):\n((?:  \S+\n)+)",
            result.output,
        )
        self.assertIsNotNone(named, result.output)
        running_ids = named[1].split()
        self.assertIn("faults.waiting.WaitsForTheSignal.test_waits", running_ids)
        for test_id in running_ids:
            module, cls, method = test_id.rsplit(".", 2)
            self.assertIn(f"ERROR: {method} ({module}.{cls}", result.output)
        self.assertIn(
            "TestInterrupted: The run was interrupted (SIGINT)", result.output
        )
        self.assert_no_test_databases()

    def test_a_second_ctrl_c_ends_at_once_and_still_cleans_up(self):
        with tempfile.TemporaryDirectory() as tmp:
            marker = Path(tmp) / "started"
            running = start_manage(
                "faults.stubborn", *PARALLEL, env={"STUBBORN_MARKER": str(marker)}
            )
            wait_for_file(marker, running)
            # The first Ctrl-C meets a worker that ignores SIGTERM...
            running.send(signal.SIGINT)
            running.wait_for("Interrupted by SIGINT.")
            # ...the second one does not wait for it.
            running.send(signal.SIGINT)
            result = running.finish(timeout=30)
        self.assert_interrupted(result, signal.SIGINT)
        self.assert_no_test_databases()

    def assert_stopped_before_the_tests(self, result):
        self.assertNotEqual(result.returncode, 0, result.output)
        self.assertIsNone(RAN.search(result.output), result.output)
        self.assert_no_test_databases()

    def test_an_interrupt_that_a_del_swallowed_still_ends_the_run(self):
        # faults.apps sends SIGTERM from inside a __del__ while migrating,
        # where Python only prints the KeyboardInterrupt the handler raises.
        for args in BOTH_MODES:
            with self.subTest(args=args):
                result = manage("multidb", *args, env={"SWALLOWED_SIGTERM": "1"})
                self.assertIn("Exception ignored in", result.output)
                self.assertIn(
                    "RunInterrupted: The run was interrupted by SIGTERM.",
                    result.output,
                )
                self.assertEqual(result.returncode, 143, result.output)
                self.assert_stopped_before_the_tests(result)

    def test_a_first_ctrl_c_during_discovery_stops_the_run(self):
        for args in BOTH_MODES:
            with self.subTest(args=args):
                running = start_manage(
                    "faults.slow_import",
                    "multidb",
                    *args,
                    env={"PAUSE_ON_IMPORT": "30"},
                )
                running.wait_for("Importing slowly.")
                running.send(signal.SIGINT)
                result = running.finish(timeout=60)
                self.assert_interrupted(result, signal.SIGINT)
                self.assert_stopped_before_the_tests(result)

    def test_interrupt_while_databases_are_being_created(self):
        # A first Ctrl-C too, which DiscoverRunner would ignore there.
        for args in BOTH_MODES:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with self.subTest(args=args, sig=sig):
                    running = start_manage(
                        "multidb", *args, env={"PAUSE_AFTER_MIGRATING": "30"}
                    )
                    running.wait_for("Paused after migrating.")
                    running.send(sig)
                    result = running.finish(timeout=60)
                    self.assert_interrupted(result, sig)
                    self.assert_stopped_before_the_tests(result)

    def test_a_signal_during_the_teardown_lets_it_finish(self):
        # In parallel, held before the clones go; in one process, before
        # Django's own teardown drops the first database.
        pauses = {
            PARALLEL: ("PAUSE_DROPPING_CLONES", "Dropping the clones slowly."),
            BOTH_MODES[1]: ("PAUSE_DROPPING", "Dropping the test databases slowly."),
        }
        for args, (pause, paused) in pauses.items():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with self.subTest(args=args, sig=sig):
                    running = start_manage(
                        "multidb", "-v", "2", *args, env={pause: "2"}
                    )
                    running.wait_for(paused)
                    running.send(sig)
                    result = running.finish(timeout=60)
                    out = result.output
                    note = out.find("Interrupted: finishing the cleanup")
                    self.assertNotEqual(note, -1, out)
                    # The drops came after the note, all of them.
                    self.assertEqual(
                        out.count("Destroying test database", note),
                        2 if args == BOTH_MODES[1] else 4,
                        out,
                    )
                    self.assert_interrupted(result, sig)
                    self.assert_no_test_databases()

    def test_a_second_signal_during_the_teardown_ends_it_at_once(self):
        running = start_manage(
            "multidb", *PARALLEL, env={"PAUSE_DROPPING_CLONES": "120"}
        )
        running.wait_for("Dropping the clones slowly.")
        running.send(signal.SIGINT)
        running.wait_for("Interrupted: finishing the cleanup")
        running.send(signal.SIGINT)
        try:
            result = running.finish(timeout=30)
        finally:
            left = server_databases(connection, e2e_databases())
            with connection.cursor() as cursor:
                for name in left:
                    cursor.execute(f"DROP DATABASE {connection.ops.quote_name(name)}")
        self.assert_interrupted(result, signal.SIGINT)
        # Stopped where it was: before the first drop.
        self.assertNotIn("Destroying test database", result.output)
        if connection.vendor != "sqlite":
            self.assertEqual(len(left), 4, left)


class ExistingTestDatabaseTests(LeavesNoDatabase):
    """A test database that is there already, which the user does not let
    Django destroy, is left alone, also by the cleanup of the failed run."""

    def test_it_outlives_the_cancelled_run(self):
        if connection.vendor == "sqlite":
            self.skipTest("about a server's databases")
        name = f"test_e2e{db_suffix()}"
        quoted = connection.ops.quote_name(name)
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {quoted}")
        try:
            for args in BOTH_MODES:
                with self.subTest(args=args):
                    # Not --noinput: Django asks, and reads no answer.
                    result = start(["manage.py", "test", "multidb", *args]).finish()
                    self.assertNotEqual(result.returncode, 0, result.output)
                    self.assertIn(
                        "Got an error creating the test database", result.output
                    )
                    self.assertIn("Type 'yes' if you would like", result.output)
                    self.assertEqual(
                        server_databases(connection, e2e_databases()), {name}
                    )
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")
        self.assert_no_test_databases()
