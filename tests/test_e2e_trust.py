"""End-to-end: a run that says OK ran every selected test once, and passed.

A worker that dies in a class or module fixture, also after its unit's last
test, fails the run and names the fixture as unittest would; a TestCase
that a worker runs after a TransactionTestCase's flush still finds what the
migrations left, as it would serially.
"""

from __future__ import annotations

from django.test import SimpleTestCase, tag

from .e2e import fixture_error_line, manage

PARALLEL = ("--parallel-groups", "2")
HOW = {
    "exit": "exited with code 3",
    "kill": "was killed by SIGKILL",
    "segfault": "was killed by SIGSEGV",
}


@tag("any_database")
class FixtureDeathTests(SimpleTestCase):
    def run_breaking(self, where: str, fault: str, *args: str, **env: str):
        return manage(
            "teardowns",
            "-v",
            "2",
            *PARALLEL,
            *args,
            env={"FIXTURE_WHERE": where, "FIXTURE_FAULT": fault, **env},
        )

    def test_a_death_after_the_last_test_fails_the_run(self):
        # Issue 19.1: every test passed, then the worker died tearing down.
        for where, target in (
            ("tearDownClass", "teardowns.tests.Breaks"),
            ("tearDownModule", "teardowns.tests"),
        ):
            for fault, how in HOW.items():
                with self.subTest(where=where, fault=fault):
                    result = self.run_breaking(where, fault)
                    out = result.output
                    self.assertEqual(result.returncode, 1, out)
                    statuses = result.statuses()
                    self.assertEqual(statuses["teardowns.tests.Breaks.test_one"], "ok")
                    self.assertEqual(statuses["teardowns.tests.Breaks.test_two"], "ok")
                    self.assertEqual(
                        statuses["teardowns.test_others.Fine.test_fine"], "ok"
                    )
                    line = fixture_error_line(f"{where} ({target})")
                    self.assertIn(f"\n{line}\n", out)
                    self.assertIn(f"ERROR: {where} ({target})", out)
                    self.assertIn(f"The worker running {where} ({target}) {how}", out)
                    self.assertEqual(result.summary, "FAILED (errors=1)")
                    self.assertEqual(result.ran, 3)

    def test_the_same_with_fresh_interpreters(self):
        result = self.run_breaking("tearDownClass", "exit", E2E_FORK_WORKERS="0")
        self.assertEqual(result.returncode, 1, result.output)
        self.assertIn(
            "The worker running tearDownClass (teardowns.tests.Breaks) exited with "
            "code 3",
            result.output,
        )

    def test_a_death_in_a_setup_fixture_skips_what_it_covers(self):
        for where, target in (
            ("setUpClass", "teardowns.tests.Breaks"),
            ("setUpModule", "teardowns.tests"),
        ):
            with self.subTest(where=where):
                result = self.run_breaking(where, "kill")
                self.assertEqual(result.returncode, 1, result.output)
                statuses = result.statuses()
                # As when the fixture raises: its tests are not run.
                self.assertNotIn("teardowns.tests.Breaks.test_one", statuses)
                self.assertEqual(statuses["teardowns.test_others.Fine.test_fine"], "ok")
                self.assertIn(
                    f"The worker running {where} ({target}) was killed by SIGKILL",
                    result.output,
                )
                self.assertEqual(result.ran, 1)

    def test_a_hang_in_a_teardown_is_stopped_and_shows_where(self):
        result = self.run_breaking("tearDownClass", "hang", "--group-timeout", "3")
        out = result.output
        self.assertEqual(result.returncode, 1, out)
        self.assertIn(
            "The worker running tearDownClass (teardowns.tests.Breaks) was stopped: "
            "its unit ran longer than --group-timeout (3s). Where it was:",
            out,
        )
        self.assertIn("in tearDownClass", out)  # the stack dump's frame


class SerialOrderTests(SimpleTestCase):
    def test_a_testcase_after_a_flush_finds_the_migrations_data(self):
        # Issue 19.6: serially every TestCase finds the data migration's
        # row. Here one runs in an isolated phase after the flushes, and one
        # in a serial group after a TransactionTestCase of its group.
        for args in ((), PARALLEL, ("--parallel-groups", "3")):
            with self.subTest(args=args):
                result = manage("seeded", "-v", "2", *args)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(result.ran, 8)
                self.assertEqual(set(result.statuses().values()), {"ok"})
