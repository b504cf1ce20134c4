"""End-to-end: whole suites of the e2e project run in subprocesses."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase, tag

from concurrent_runner.reports.skips import SKIPS_UNSTARTED

from .e2e import (
    E2E_PROJECT,
    OUTCOMES_RAN,
    described,
    e2e_databases,
    manage,
    run,
    server_databases,
)

PARALLEL = ("--parallel-groups", "2")
#: The "stopping" suite's tests.
STOPPING_RAN = 22
#: Django's --durations exists on Python 3.12+.
DJANGO_DURATIONS = sys.version_info >= (3, 12)


@tag("any_database")
class ReplayTests(SimpleTestCase):
    """Every kind of outcome comes back from workers as it does serially."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.serial = manage("outcomes", "-v", "2")
        cls.parallel = manage("outcomes", "-v", "2", "--parallel-groups", "3")
        # Workers as fresh interpreters (the fallback when forking is not
        # possible) instead of forks.
        cls.fresh = manage(
            "outcomes",
            "-v",
            "2",
            "--parallel-groups",
            "3",
            env={"E2E_FORK_WORKERS": "0"},
        )

    def test_same_outcomes_and_exit_code(self):
        self.assertEqual(self.serial.returncode, 1, self.serial.output)
        self.assertEqual(self.parallel.returncode, 1, self.parallel.output)
        self.assertEqual(
            self.serial.summary,
            "FAILED (failures=3, errors=3, skipped=1, expected failures=1, "
            "unexpected successes=1)",
        )
        self.assertEqual(self.parallel.summary, self.serial.summary)
        self.assertEqual(self.parallel.ran, self.serial.ran)
        self.assertEqual(self.parallel.headers(), self.serial.headers())
        self.assertEqual(self.parallel.statuses(), self.serial.statuses())

    def test_fresh_interpreter_workers_give_the_same_report(self):
        self.assertEqual(self.fresh.returncode, 1, self.fresh.output)
        self.assertEqual(self.fresh.summary, self.serial.summary)
        self.assertEqual(self.fresh.headers(), self.serial.headers())
        self.assertEqual(self.fresh.statuses(), self.serial.statuses())

    def test_tracebacks_come_back_whole(self):
        out = self.parallel.output
        self.assertIn('raise ValueError("boom")', out)
        self.assertIn("ValueError: boom", out)
        self.assertIn("AssertionError: 1 != 2 : one is not two", out)
        self.assertIn("ERROR: setUpClass (outcomes.tests.BrokenSetUpClass)", out)
        self.assertIn('raise RuntimeError("setUpClass broke")', out)
        self.assertIn("(i=2)", out)
        # unittest's own frames are dropped, as they are serially.
        self.assertNotIn("testPartExecutor", out)

    def test_unpicklable_exception_is_reported_not_fatal(self):
        out = self.parallel.output
        self.assertIn("outcomes.tests.Unpicklable raised by test_unpicklable", out)
        self.assertIn('raise Unpicklable("cannot travel")', out)

    def test_doctests_from_load_tests_run(self):
        self.assertIn("Doctest: outcomes.doctested.double ... ok", self.parallel.output)

    def test_printed_output_stays_with_its_test(self):
        out = self.parallel.output
        self.assertEqual(out.count("printed by test_prints"), 1)
        self.assertRegex(
            out,
            re.escape(described("outcomes.tests.Passing.test_prints"))
            + r" \.\.\. printed by test_prints\nok",
        )
        self.assertRegex(
            out,
            re.escape(described("outcomes.tests.Failing.test_fails"))
            + r" \.\.\. output of the failing test\nstderr of the failing test\nFAIL",
        )

    def test_buffer_discards_passing_output_and_keeps_failing(self):
        buffered = manage("outcomes", "--buffer", *PARALLEL)
        self.assertEqual(buffered.returncode, 1)
        self.assertNotIn("printed by test_prints", buffered.output)
        self.assertIn("Stdout:\noutput of the failing test", buffered.output)
        self.assertIn("Stderr:\nstderr of the failing test", buffered.output)


class InProcessTests(SimpleTestCase):
    def test_without_the_flag_it_is_discover_runner(self):
        ours = manage("outcomes", "-v", "2")
        django = manage(
            "outcomes", "-v", "2", "--testrunner", "django.test.runner.DiscoverRunner"
        )
        self.assertEqual(ours.returncode, django.returncode)
        self.assertEqual(ours.summary, django.summary)
        self.assertEqual(ours.headers(), django.headers())
        statuses = ours.statuses()
        if SKIPS_UNSTARTED:
            # There unittest prints a @skip test's status without its name
            # after an "expected failure" line; the runner names it.
            skipped = statuses.pop("outcomes.tests.Mixed.test_skipped")
            self.assertEqual(skipped, "skipped 'not today'")
        self.assertEqual(list(statuses.items()), list(django.statuses().items()))
        self.assertNotIn("worker processes", ours.output)

    def test_in_memory_sqlite_becomes_a_file(self):
        if connection.vendor != "sqlite":
            self.skipTest("only SQLite has in-memory test databases")
        out = manage("outcomes.tests.Passing", "-v", "2").output
        self.assertRegex(
            out,
            r"Creating test database for alias 'default' \('.*test_default\.sqlite3'\)",
        )

    def test_parallel_groups_one_runs_in_process(self):
        result = manage("multidb", "--parallel-groups", "1")
        self.assertEqual(result.returncode, 0, result.output)
        self.assertNotIn("worker processes", result.output)


@tag("any_database")
class InvocationTests(SimpleTestCase):
    """The three ways a Django project starts its tests."""

    env = {"EXPECT_WORKERS": "2"}

    def assert_parallel_ok(self, result, tests=7):
        self.assertEqual(result.returncode, 0, result.output)
        self.assertIn("on 2 worker processes", result.output)
        self.assertEqual(result.ran, tests)
        # Checked once, before the clones are made from the test databases.
        self.assertEqual(result.output.count("System check identified"), 1)
        self.assertLess(
            result.output.index("System check identified"),
            result.output.index("Cloning test database"),
        )

    def test_manage_py(self):
        self.assert_parallel_ok(manage("multidb", *PARALLEL, env=self.env))

    def test_python_m_django_with_settings(self):
        result = run(
            ["-m", "django", "test", "--noinput", "multidb", *PARALLEL,
             "--settings=e2e_settings", "--pythonpath", str(E2E_PROJECT)],
            env=self.env,
        )  # fmt: skip
        self.assert_parallel_ok(result)

    def test_django_admin_with_settings(self):
        django_admin = Path(sys.executable).parent / "django-admin"
        if not django_admin.exists():
            self.skipTest(f"no django-admin beside {sys.executable}")
        result = run(
            [str(django_admin), "test", "--noinput", "multidb", *PARALLEL,
             "--settings=e2e_settings", "--pythonpath", str(E2E_PROJECT)],
            env=self.env,
        )  # fmt: skip
        self.assert_parallel_ok(result)

    def test_runtests_script_that_configures_settings(self):
        result = run(["configured.py", "multidb"], env=self.env)
        self.assertEqual(result.returncode, 0, result.output)
        self.assertIn("configured.py: first=0 second=0", result.output)
        self.assertIn("on 2 worker processes", result.output)
        self.assertEqual(len(re.findall(r"^Ran \d+ tests?", result.output, re.M)), 2)

    def test_a_worker_ends_after_serving_not_running_the_rest_of_the_script(self):
        with tempfile.TemporaryDirectory() as tmp:
            after = Path(tmp) / "after.txt"
            result = run(
                ["configured.py", "multidb"],
                env={**self.env, "CONFIGURED_AFTER": str(after)},
            )
            self.assertEqual(result.returncode, 0, result.output)
            # Only the process that ran the script, not its workers.
            [line] = after.read_text().splitlines()
            self.assertRegex(line, r"^pid \d+: first=0 second=0$")


class FreshInterpreterInvocationTests(InvocationTests):
    """The same, with workers started by re-running the command (the way
    when forking is off or unavailable)."""

    env = {"EXPECT_WORKERS": "2", "E2E_FORK_WORKERS": "0"}


@tag("any_database")
class BadGroupTests(SimpleTestCase):
    def assert_rejected(self, label, *fragments):
        for args in ((), PARALLEL):
            result = manage(f"badgroups.{label}", *args)
            self.assertEqual(result.returncode, 1, result.output)
            self.assertIn("ConfigurationError:", result.output)
            for fragment in fragments:
                self.assertIn(fragment, result.output)
            self.assertNotIn("ran despite", result.output)
            self.assertNotRegex(result.output, r"Ran \d+ test")

    def test_unknown_strategy(self):
        self.assert_rejected(
            "unknown_strategy",
            "badgroups.unknown_strategy.Sometimes",
            "'sometimes'",
            "'payments'",
            "'free', 'serial', 'isolated_free', 'isolated_serial'",
        )

    def test_conflicting_strategies(self):
        self.assert_rejected(
            "conflict",
            "badgroups.conflict.First",
            "badgroups.conflict.Second",
            "'serial'",
            "'isolated_free'",
        )

    def test_malformed_value(self):
        self.assert_rejected(
            "malformed",
            "badgroups.malformed.Malformed",
            "('payments', 'serial', 'extra')",
            "'isolated_serial'",
        )


# Django's own test flags keep working with --parallel-groups. Three classes,
# so that our own parallel run can spread them over its workers.


@tag("any_database")
class SelectionFlagTests(SimpleTestCase):
    """Flags that choose which tests run, and in what order."""

    def test_k_selects_by_name(self):
        k = ("-k", "test_write", "-k", "test_errors")
        serial = manage("outcomes", *k)
        result = manage("outcomes", *k, *PARALLEL)
        # -k filters methods; the doctests load_tests adds stay, as serially.
        self.assertEqual(result.ran, 3, result.output)
        self.assertEqual(result.ran, serial.ran)
        self.assertEqual(result.summary, "FAILED (errors=1)")

    def test_tag_and_exclude_tag(self):
        tagged = manage("multidb", "--tag", "all", *PARALLEL, "-v", "2")
        self.assertEqual(tagged.returncode, 0, tagged.output)
        self.assertEqual(tagged.ran, 3)
        self.assertTrue(all("AllDatabases" in t for t in tagged.statuses()))
        excluded = manage("multidb", "--exclude-tag", "all", *PARALLEL, "-v", "2")
        self.assertEqual(excluded.ran, 4)
        self.assertFalse(any("AllDatabases" in t for t in excluded.statuses()))

    def test_failfast_stops_every_worker(self):
        # Of the suite's STOPPING_RAN tests (ReportingFlagTests runs them all).
        stopped = manage("stopping", "--failfast", *PARALLEL)
        self.assertEqual(stopped.returncode, 1, stopped.output)
        self.assertIn("first failure", stopped.output)
        self.assertLessEqual(stopped.ran, 4, stopped.output)

    def test_reverse(self):
        result = manage("outcomes", "--reverse", "-v", "2", *PARALLEL)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.ran, OUTCOMES_RAN)
        self.assertIn("Phase 1", result.output)

    def test_shuffle_seed_gives_the_same_plan(self):
        def plan(result):
            return [
                line
                for line in result.output.splitlines()
                if (line.startswith(("Phase", "  ")) and "estimate" in line)
                or line.startswith("Phase")
            ]

        first = manage("outcomes", "--shuffle", "1234", "-v", "2", *PARALLEL)
        second = manage("outcomes", "--shuffle", "1234", "-v", "2", *PARALLEL)
        self.assertIn("Used shuffle seed: 1234", first.output)
        self.assertTrue(plan(first))
        self.assertEqual(plan(first), plan(second))
        self.assertEqual(first.statuses(), second.statuses())


@tag("any_database")
class ReportingFlagTests(SimpleTestCase):
    """Flags that change what the run prints."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # One run of the whole "stopping" suite serves --timing, --durations
        # and the durations file.
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        cls.durations_file = Path(tmp.name) / "durations.json"
        durations = ("--durations", "3") if DJANGO_DURATIONS else ()
        cls.stopping = manage(
            "stopping", "--timing", *durations, *PARALLEL,
            env={"DURATIONS_FILE": str(cls.durations_file)},
        )  # fmt: skip

    def test_the_whole_suite_ran(self):
        self.assertEqual(self.stopping.returncode, 1, self.stopping.output)
        self.assertEqual(self.stopping.ran, STOPPING_RAN, self.stopping.output)

    def test_timing(self):
        self.assertIn("Total database setup took", self.stopping.output)
        self.assertIn("Total run took", self.stopping.output)

    def test_durations(self):
        if not DJANGO_DURATIONS:
            self.skipTest("Django offers --durations on Python 3.12+ only")
        self.assertIn("Slowest test durations", self.stopping.output)
        self.assertIn("stopping.tests.Slow", self.stopping.output)

    def test_debug_sql_shows_the_workers_queries(self):
        result = manage("outcomes.tests.Failing", "outcomes.tests.Passing",
                        "--debug-sql", *PARALLEL)  # fmt: skip
        self.assertEqual(result.returncode, 1)
        report = result.output.split("FAIL: test_fails", 1)[1]
        self.assertIn('SELECT COUNT(*) AS "__count"', report.replace("`", '"'))

    def test_verbosity_levels(self):
        quiet = manage("multidb", "-v", "0", *PARALLEL)
        self.assertEqual(quiet.returncode, 0, quiet.output)
        self.assertNotIn("Found", quiet.output)
        self.assertNotIn("worker processes", quiet.output)
        loud = manage("multidb", "-v", "3", *PARALLEL)
        self.assertEqual(loud.returncode, 0, loud.output)
        self.assertIn("... ok", loud.output)

    def test_durations_file_is_written_and_read(self):
        path = self.durations_file
        data = json.loads(path.read_text())
        self.assertEqual(data["version"], 1)
        self.assertGreater(data["classes"]["stopping.tests.SlowOne"], 1.0)
        self.assertLess(data["classes"]["stopping.tests.AFailsFirst"], 1.0)
        # Recorded times now outrank the test counts: AFailsFirst (4 tests,
        # fast) is planned at its recorded time, not as 4 tests.
        second = manage(
            "stopping", "-v", "2", *PARALLEL, env={"DURATIONS_FILE": str(path)}
        )
        planned = re.search(
            r"^  worker \d: stopping.tests.AFailsFirst \(estimate ([\d.]+)\)$",
            second.output,
            re.M,
        )
        self.assertIsNotNone(planned, second.output)
        self.assertLess(float(planned.group(1)), 1.0)


@tag("any_database")
class FailedTests(SimpleTestCase):
    def test_failed_runs_what_failed_last_time(self):
        with tempfile.TemporaryDirectory() as tmp:
            env = {"FAILED_FILE": str(Path(tmp) / "failed.json")}
            labels = ("stopping.tests.AFailsFirst", "stopping.tests.SlowOne")
            nothing = manage(*labels, "--failed", *PARALLEL, env=env)
            self.assertIn("No failures recorded by the last run", nothing.output)
            self.assertEqual(nothing.ran, 7)
            again = manage(*labels, "--failed", "-v", "2", *PARALLEL, env=env)
            self.assertIn("Running the 1 test(s) that failed last time.", again.output)
            self.assertEqual(
                again.statuses(), {"stopping.tests.AFailsFirst.test_a_fails": "FAIL"}
            )
            first = manage(*labels, "--failed-first", "-v", "2", env=env)
            self.assertEqual(first.ran, 7)
            self.assertEqual(
                next(iter(first.statuses())), "stopping.tests.AFailsFirst.test_a_fails"
            )

    def test_a_short_summary_of_failures_at_every_verbosity(self):
        for verbosity in ("0", "1"):
            result = manage("stopping.tests.AFailsFirst", "-v", verbosity, *PARALLEL)
            self.assertIn(
                "short test summary info\n"
                "FAIL stopping.tests.AFailsFirst.test_a_fails - AssertionError: "
                "first failure\n",
                result.output,
            )


@tag("any_database")
class ReproduceTests(SimpleTestCase):
    def test_a_failure_only_in_parallel_comes_with_its_workers_sequence(self):
        serial = manage("orderdep", "-v", "2")
        self.assertEqual(serial.returncode, 0, serial.output)
        with tempfile.TemporaryDirectory() as tmp:
            env = {"SEQUENCES_DIR": tmp}
            parallel = manage("orderdep", "-v", "2", *PARALLEL, env=env)
            self.assertEqual(parallel.returncode, 1, parallel.output)
            self.assertEqual(
                parallel.statuses()["orderdep.tests.Victim.test_victim"], "FAIL"
            )
            path = Path(tmp) / "orderdep.tests.Victim.test_victim.txt"
            self.assertEqual(
                path.read_text().splitlines()[1:],
                [
                    "orderdep.tests.Busy.test_busy",
                    "orderdep.tests.InnocentToo.test_innocent",
                    "orderdep.tests.Victim.test_victim",
                ],
            )
            self.assertIn(f"--sequence {path}", parallel.output)
            # The command given runs that sequence, and the failure is back.
            again = manage("orderdep", *PARALLEL, "-v", "2", "--sequence", str(path))
            self.assertEqual(
                list(again.statuses().items()),
                [
                    ("orderdep.tests.Busy.test_busy", "ok"),
                    ("orderdep.tests.InnocentToo.test_innocent", "ok"),
                    ("orderdep.tests.Victim.test_victim", "FAIL"),
                ],
            )

    def test_bisect_finds_the_test_that_makes_another_fail(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "seq.txt"
            path.write_text(
                "".join(
                    f"orderdep.tests.{name}\n"
                    for name in (
                        "AnAppPrepares.test_prepare",
                        "Innocent.test_innocent",
                        "ZPoisons.test_poison",
                        "Busy.test_busy",
                        "PoisonVictim.test_victim",
                    )
                )
            )
            result = manage("--bisect", str(path))
            self.assertEqual(result.returncode, 0, result.output)
            self.assertIn(
                "orderdep.tests.PoisonVictim.test_victim fails when "
                "orderdep.tests.ZPoisons.test_poison runs before it, and passes "
                "alone.",
                result.output,
            )
            self.assertEqual(
                (Path(tmp) / "seq.pair.txt").read_text().splitlines()[1:],
                [
                    "orderdep.tests.ZPoisons.test_poison",
                    "orderdep.tests.PoisonVictim.test_victim",
                ],
            )


@tag("any_database")
class RefusedFlagTests(SimpleTestCase):
    """Flags that cannot go with --parallel-groups, and a bad value of it."""

    def test_pdb_and_parallel_are_refused_with_advice(self):
        for args in (PARALLEL, ("--parallel", "2")):
            with self.subTest(args=args):
                pdb = manage("multidb", "--pdb", *args)
                self.assertEqual(pdb.returncode, 1)
                self.assertIn("You cannot use --pdb with parallel tests", pdb.output)

    def test_djangos_parallel_runs_our_workers(self):
        # Drop-in: changing TEST_RUNNER is the only change a project makes.
        for args, env, chosen in (
            (("--parallel", "2"), {}, "--parallel 2"),
            (("--parallel",), {"DJANGO_TEST_PROCESSES": "2"}, "--parallel 2"),
            (("--parallel", "4", "--parallel-groups", "2"), {}, "--parallel-groups 2"),
            (
                (),
                {"E2E_PARALLEL_GROUPS": "2"},
                "settings.CONCURRENT_RUNNER_PARALLEL_GROUPS ('2')",
            ),
        ):
            with self.subTest(args=args):
                result = manage("multidb", "-v", "2", *args, env=env)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertIn("on 2 worker processes", result.output)
                self.assertIn(
                    f"The number of workers was chosen by {chosen}.", result.output
                )
                self.assertEqual(result.ran, 7)

    def test_bad_parallel_groups_value(self):
        result = manage("multidb", "--parallel-groups", "many")
        self.assertEqual(result.returncode, 2)
        self.assertIn(
            "'many' is not a positive integer or the string 'auto'", result.output
        )


class KeepdbTests(SimpleTestCase):
    databases = {"default"}  # to list the server's databases

    def clones(self) -> set[str]:
        if connection.vendor == "sqlite":
            return {p.name for p in E2E_PROJECT.glob("*_[0-9]*.sqlite3")}
        return server_databases(connection, e2e_databases(clones_only=True))

    def test_keepdb_keeps_the_database_and_its_clones(self):
        env = {"EXPECT_WORKERS": "2", "EXPECT_KEEPDB": "1"}
        try:
            for _ in range(2):
                result = manage("multidb", "--keepdb", *PARALLEL, env=env)
                self.assertEqual(result.returncode, 0, result.output)
                if connection.vendor == "sqlite":
                    # In-memory test databases: their files, the clones'
                    # too, are the run's own, gone with it.
                    self.assertEqual(self.clones(), set())
                else:
                    self.assertEqual(len(self.clones()), 4)  # 2 aliases x 2
            if connection.vendor != "sqlite":
                self.assertIn("Using existing test database", result.output)
                self.assertEqual(
                    result.output.count("Using existing clone for alias"), 4
                )
        finally:
            # And drop them (the last slot now works on the test databases).
            again = manage("multidb", *PARALLEL, env={"EXPECT_WORKERS": "2"})
        self.assertEqual(again.returncode, 0, again.output)
        self.assertEqual(self.clones(), set())


class DatabasePerSlotTests(SimpleTestCase):
    """Slot 1 works on a clone, slot 2 (the last) on the test databases
    themselves, which --keepdb keeps out of the workers' reach."""

    def databases_by_slot(self, *args: str, env: dict[str, str]) -> dict[int, str]:
        with tempfile.TemporaryDirectory() as tmp:
            record = os.path.join(tmp, "databases.txt")
            result = manage(
                "multidb.tests.AllDatabases",
                "multidb.tests.AvailableApps",
                *args,
                *PARALLEL,
                env={**env, "EXPECT_WORKERS": "2", "RECORD_DATABASES": record},
            )
            self.assertEqual(result.returncode, 0, result.output)
            with open(record) as f:
                lines = [line.split() for line in f]
        return {int(slot): name for slot, alias, name in lines if alias == "default"}

    def test_the_last_slot_works_on_the_test_database(self):
        names = self.databases_by_slot(env={})
        self.assertEqual(sorted(names), [1, 2], "both slots ran a unit")
        self.assertRegex(names[1], r"_1(\.sqlite3)?$")
        self.assertEqual(re.sub(r"_1(\.sqlite3)?$", r"\1", names[1]), names[2])

    def test_with_keepdb_every_slot_has_a_clone(self):
        env = {"EXPECT_KEEPDB": "1"}
        try:
            names = self.databases_by_slot("--keepdb", env=env)
        finally:
            manage("multidb", *PARALLEL)  # and drop the kept database
        self.assertRegex(names[1], r"_1(\.sqlite3)?$")
        self.assertRegex(names[2], r"_2(\.sqlite3)?$")


@tag("any_database")
class ShardAndListTests(SimpleTestCase):
    def test_shards_cover_the_suite_exactly_once(self):
        # All shards must read the same durations (here: none), as CI shards
        # started from one restored file do.
        labels = ("outcomes", "multidb", "faults.stubborn")
        whole = manage(*labels, "-v", "2")
        seen: set[str] = set()
        ran = 0
        for k in (1, 2, 3):
            shard = manage(
                *labels, "-v", "2", "--parallel-groups", "2", "--shard", f"{k}/3"
            )
            self.assertIn(f"Shard {k}/3:", shard.output)
            ids = set(shard.statuses())
            self.assertTrue(ids)
            self.assertFalse(ids & seen, "a test ran in two shards")
            seen |= ids
            ran += shard.ran
        self.assertEqual(seen, set(whole.statuses()))
        self.assertEqual(ran, whole.ran)

    def test_list_groups_prints_the_plan_and_runs_nothing(self):
        result = manage(
            "outcomes", "multidb", "--parallel-groups", "3", "--list-groups"
        )
        self.assertEqual(result.returncode, 0, result.output)
        self.assertIn("18 test(s) in 9 unit(s)", result.output)
        self.assertIn("3 worker(s)", result.output)
        self.assertRegex(result.output, r"Phase 1, shared, 3 at a time")
        self.assertRegex(
            result.output,
            r"worker \d at \d+\.\d\d: outcomes\.tests\.Failing "
            r"\(estimate [\d.]+, 3 test\(s\)\)",
        )
        self.assertNotIn("Creating test database", result.output)
        self.assertNotRegex(result.output, r"Ran \d+ test")

    def test_bad_shard_is_refused(self):
        result = manage("outcomes", "--shard", "3/2")
        self.assertEqual(result.returncode, 2)
        self.assertIn("the shard K/N needs 1 <= K <= N", result.output)


@tag("any_database")
class ReportTests(SimpleTestCase):
    def junit(self, *args):
        import xml.etree.ElementTree as ET

        from .test_reports import _first_problem, check_junit_schema

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.xml"
            result = manage("outcomes", "--junit-xml", str(path), *args)
            self.assertIn("JUnit XML report written to", result.output)
            xml = path.read_text()
            self.read_as_ci_does(path)
        check_junit_schema(self, xml)
        cases = {
            (c.get("classname"), c.get("name")): (_first_problem(c), c)
            for c in ET.fromstring(xml).iter("testcase")
        }
        return result, cases

    def read_as_ci_does(self, path):
        """junitparser is what GitHub's popular test-result reporter reads
        reports with; .ci/run installs it, so in CI this cannot be skipped."""
        try:
            import junitparser
        except ImportError:
            if os.environ.get("CI"):
                self.fail("junitparser is not installed; .ci/run installs it")
            return
        report = junitparser.JUnitXml.fromfile(str(path))
        suites = list(report)
        self.assertEqual(len(suites), 1)
        cases = list(suites[0])
        self.assertEqual(suites[0].tests, len(cases))
        failed = [c for c in cases if not c.is_passed and not c.is_skipped]
        self.assertEqual(len(failed), suites[0].failures + suites[0].errors)
        self.assertEqual(sum(c.is_skipped for c in cases), suites[0].skipped)

    def test_junit_xml_same_in_parallel_and_in_process(self):
        parallel, cases = self.junit("--parallel-groups", "3")
        serial, serial_cases = self.junit()
        self.assertEqual(parallel.returncode, serial.returncode)
        self.assertEqual(
            {k: v[0] for k, v in cases.items()},
            {k: v[0] for k, v in serial_cases.items()},
        )
        self.assertEqual(cases[("outcomes.tests.Failing", "test_errors")][0], "error")
        self.assertEqual(cases[("outcomes.doctested", "double")][0], None)
        # Captured per test in workers, so the report has it.
        prints = cases[("outcomes.tests.Passing", "test_prints")][1]
        self.assertEqual(prints.findtext("system-out"), "printed by test_prints\n")
        failing = cases[("outcomes.tests.Failing", "test_fails")][1]
        self.assertEqual(failing.findtext("system-err"), "stderr of the failing test\n")

    def test_progress_lines_in_a_log(self):
        result = manage("outcomes", "--parallel-groups", "3")
        # Every selected test is accounted for at the end, also those of a
        # class whose setUpClass failed (never reported, as in unittest).
        found = re.search(r"^Found (\d+) test", result.output, re.M)
        self.assertIsNotNone(found, result.output)
        self.assertRegex(
            result.output, rf"\[{found[1]}/{found[1]} tests \| \d+ passed, \d+ failed"
        )
        quiet = manage("outcomes", "--parallel-groups", "3", "-v", "0")
        self.assertNotIn("tests |", quiet.output)

    def test_a_terminal_gets_a_status_line_in_place(self):
        # Under a pseudo-terminal: the line is redrawn in place, the dots
        # make way for it, and a failure is named as it happens.
        in_a_terminal = (
            "import os, pty, sys; "
            "sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))"
        )
        result = run(
            [
                sys.executable,
                "-c",
                in_a_terminal,
                sys.executable,
                "manage.py",
                "test",
                "--noinput",
                "stopping.tests.AFailsFirst",
                "stopping.tests.SlowOne",
                *PARALLEL,
            ]
        )
        out = result.output
        self.assertEqual(result.returncode, 1, out)
        # (Read back as text, every carriage return is a newline here.)
        self.assertIn("\x1b[K\x1b[2m[0/7 tests", out)
        self.assertIn("\x1b[K\x1b[2m[7/7 tests | 6 passed, 1 failed", out)
        self.assertIn("\x1b[KFAIL: stopping.tests.AFailsFirst.test_a_fails\n", out)
        self.assertNotIn("F.", out)  # no row of dots
        self.assertIn("Ran 7 tests", out)

    def test_timings_summary_at_verbosity_two(self):
        result = manage("stopping", "--parallel-groups", "2", "-v", "2")
        self.assertRegex(
            result.output,
            r"Timings: wall [\d.]+s; lower bound [\d.]+s = max\(total [\d.]+s / 2 "
            r"worker\(s\), longest unit [\d.]+s\); efficiency \d+%\.",
        )
        self.assertRegex(
            result.output, r"Slowest units:\n\s+[\d.]+s  stopping\.tests\.Slow"
        )
        self.assertNotIn(
            "Timings:", manage("stopping", "--parallel-groups", "2").output
        )


@tag("any_database")
class InProcessOutputTests(SimpleTestCase):
    def test_verbose_in_process_output_is_discover_runners_line_for_line(self):
        # Suites that do not depend on the one documented difference (an
        # in-memory SQLite test database becomes a file).
        def lines(result):
            # Timing figures and temporary paths differ from run to run.
            text = re.sub(r"\d+\.\d+s", "Xs", result.output)
            return re.sub(r"/tmp/\S+", "PATH", text).splitlines()

        # Unbuffered, so that both interleave stdout and stderr the same way.
        env = {"PYTHONUNBUFFERED": "1"}
        ours = manage("outcomes", "stopping.tests.AFailsFirst", "-v", "2", env=env)
        django = manage(
            "outcomes", "stopping.tests.AFailsFirst", "-v", "2",
            "--testrunner", "django.test.runner.DiscoverRunner", env=env,
        )  # fmt: skip
        self.assertEqual(ours.returncode, django.returncode)
        self.assertNotIn("Timings:", ours.output)
        ours_lines = [line for line in lines(ours) if "test database" not in line]
        django_lines = [line for line in lines(django) if "test database" not in line]
        # The one addition: the short summary of what failed, after the
        # tracebacks and before "Ran N tests".
        start = ours_lines.index("short test summary info") - 1
        end = start + ours_lines[start:].index("-" * 70)
        summary = ours_lines[start + 2 : end]
        self.assertIn(
            "FAIL stopping.tests.AFailsFirst.test_a_fails - AssertionError: first "
            "failure",
            summary,
        )
        del ours_lines[start:end]
        if SKIPS_UNSTARTED:
            # The one line the runner changes there: it names the @skip test
            # that unittest leaves unnamed after an "expected failure".
            bare = "skipped 'not today'"
            self.assertIn(bare, django_lines)
            django_lines[django_lines.index(bare)] = (
                f"{described('outcomes.tests.Mixed.test_skipped')} ... {bare}"
            )
        self.assertEqual(ours_lines, django_lines)


#: In process, in forked workers, in fresh-interpreter workers.
EVERY_WAY = (((), "1"), (PARALLEL, "1"), (PARALLEL, "0"))


class TuningTests(SimpleTestCase):
    """What the runner does to its test databases, every way it runs tests."""

    def assert_every_way(self, label: str, env: dict[str, str], ran: int) -> None:
        for args, fork in EVERY_WAY:
            with self.subTest(env=env, args=args, fork=fork):
                result = manage(label, *args, env={**env, "E2E_FORK_WORKERS": fork})
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(result.ran, ran)

    def test_runner_made_sqlite_files_skip_fsync_and_journal_files(self):
        if connection.vendor != "sqlite":
            self.skipTest("about the runner's own SQLite files")
        # synchronous 0: OFF, 2: FULL.
        for fast, synchronous, journal in (("1", "0", "persist"), ("0", "2", "delete")):
            env = {
                "FAST_SQLITE": fast,
                "EXPECT_SYNCHRONOUS": synchronous,
                "EXPECT_JOURNAL_MODE": journal,
            }
            self.assert_every_way("tuning.tests", env, ran=4)

    def test_postgresql_test_databases_commit_as_the_setting_says(self):
        if connection.vendor != "postgresql":
            self.skipTest("about PostgreSQL's synchronous_commit")
        for fast in ("1", "0"):
            env = {"FAST_POSTGRESQL": fast, "EXPECT_FAST_POSTGRESQL": fast}
            self.assert_every_way("tuning.test_postgresql", env, ran=4)

    def test_postgresql_flushes_as_the_setting_says(self):
        # On SQLite and MariaDB Django's own flush runs, whatever the setting.
        for fast in ("1", "0"):
            self.assert_every_way(
                "flushing", {"FAST_FLUSH": fast, "EXPECT_FAST_FLUSH": fast}, ran=6
            )


@tag("any_database")
class StandInSqliteTests(SimpleTestCase):
    def test_the_connection_outlives_each_test_as_in_memory(self):
        if connection.vendor != "sqlite":
            self.skipTest("about the file that stands in for in-memory SQLite")
        django = ("--testrunner", "django.test.runner.DiscoverRunner")
        for args in (django, (), PARALLEL):
            with self.subTest(args=args):
                result = manage("standin", "-v", "2", *args)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(result.ran, 8)
                if args == PARALLEL:
                    self.assertIn("on 2 worker processes", result.output)

    def test_django_parallel_workers_still_reach_their_clones(self):
        # Django's own --parallel runs our workers: each writes to its own
        # clone, never to the database the parent kept open.
        if connection.vendor != "sqlite":
            self.skipTest("about the file that stands in for in-memory SQLite")
        labels = [
            f"standin.tests.RowsStayInTheirDatabase{suffix}"
            for suffix in ("", "Too", "Three", "Four")
        ]
        result = manage(*labels, "--parallel", "2")
        self.assertEqual(result.returncode, 0, result.output)
        self.assertEqual(result.ran, 4)


@tag("any_database")
class OutputOrderTests(SimpleTestCase):
    def test_printed_output_stays_next_to_its_test_in_a_log(self):
        # stdout and stderr go to one file here, and stdout is block-buffered,
        # as in a CI log.
        result = manage("chatty", "-v", "2", *PARALLEL, env={"PYTHONUNBUFFERED": ""})
        self.assertEqual(result.returncode, 0, result.output)
        for cls in ("ChattyA", "ChattyB", "ChattyC"):
            for method in ("test_one", "test_two"):
                test_id = f"chatty.tests.{cls}.{method}"
                line = re.escape(f"{described(test_id)} ... <<{test_id}>>")
                self.assertRegex(result.output, rf"{line}x{{5000}}\nok\n")

    def test_the_check_report_comes_before_the_clones_in_a_log(self):
        result = manage("multidb", *PARALLEL, env={"PYTHONUNBUFFERED": ""})
        self.assertEqual(result.returncode, 0, result.output)
        self.assertLess(
            result.output.index("System check identified"),
            result.output.index("Cloning test database"),
        )


@tag("any_database")
class ExitTests(SimpleTestCase):
    """The test process skips the collector's last passes at exit; what
    Python promises at exit still happens."""

    PROMISED = [
        "printed by the test",  # block-buffered: flushed at exit
        "an atexit handler ran",
        "a weakref.finalize callback ran",
    ]

    def exit_lines(self, **env: str) -> list[str]:
        """What the process printed after its result (one process: the
        test runs in the process whose exit is seen)."""
        result = manage("exiting", env={"PYTHONUNBUFFERED": "", **env})
        self.assertEqual(result.returncode, 0, result.output)
        return result.output.split("\nOK\n", 1)[1].splitlines()

    def assert_promised(self, lines: list[str]) -> None:
        # In an order that depends on the Python version.
        self.assertEqual(sorted(lines[:3]), sorted(self.PROMISED), lines)

    def test_what_python_promises_happens_but_no_final_collection(self) -> None:
        lines = self.exit_lines()
        self.assert_promised(lines)
        self.assertNotIn("a cycle was collected at exit", lines)
        self.assertNotIn("a plain object was freed at exit", lines)  # a global

    def test_the_final_collection_when_the_setting_says_so(self) -> None:
        lines = self.exit_lines(FAST_EXIT="0")
        self.assert_promised(lines)
        self.assertIn("a cycle was collected at exit", lines)
        self.assertIn("a plain object was freed at exit", lines)


@tag("any_database")
class LongClassTests(SimpleTestCase):
    def test_a_very_long_class_runs_whole_beside_the_short_ones(self):
        # Real suites often have one class far longer than the rest.
        django = manage(
            "longclass", "-v", "2", "--testrunner", "django.test.runner.DiscoverRunner"
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "timeline.json"
            ours = manage("longclass", "-v", "2", *PARALLEL, "--timeline", str(path))
            units = json.loads(path.read_text())["units"]
        self.assertEqual(django.returncode, 0, django.output)
        self.assertEqual(ours.returncode, 0, ours.output)
        self.assertEqual((ours.ran, ours.summary), (django.ran, django.summary))
        self.assertEqual(ours.statuses(), django.statuses())
        self.assertEqual(len(ours.statuses()), 158)
        # Planned first (150 tests), so the short classes fill the other
        # worker while it runs.
        plan = ours.output.split("Phase 1", 1)[1].splitlines()
        self.assertIn("longclass.tests.LongClass (estimate 150.00)", plan[1])
        by_label = {u["label"].rsplit(".", 1)[1]: u for u in units}
        long = by_label.pop("LongClass")
        self.assertEqual(len(long["tests"]), 150)
        self.assertEqual(len(by_label), 4)
        for short in by_label.values():
            self.assertNotEqual(short["worker"], long["worker"])
            self.assertLess(short["start"], long["end"])
