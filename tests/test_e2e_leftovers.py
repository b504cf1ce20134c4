"""End-to-end: what a run killed with SIGKILL left behind is cleared by the
next run."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase

from concurrent_runner.rundirs import PREFIX

from .e2e import (
    _tagged_pids,
    db_suffix,
    e2e_databases,
    manage,
    server_databases,
    start,
    start_manage,
)

PARALLEL = ("--parallel-groups", "2")


class KilledRunTests(SimpleTestCase):
    databases = {"default"}  # to list the server's databases

    def test_the_next_run_removes_the_run_directory_of_a_killed_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            shared = {"TMPDIR": tmp}
            killed = start_manage(
                "multidb", "stopping.tests.SlowOne", "stopping.tests.SlowTwo",
                "-v", "2", *PARALLEL, env=shared,
            )  # fmt: skip
            try:
                killed.wait_for(" ... ok")
                killed.send(signal.SIGKILL)
                killed.finish(check_clean=False)
                self.wait_for_workers_to_end(killed.tag)
                left = sorted(Path(tmp).glob(f"{PREFIX}*"))
                self.assertEqual(len(left), 1, left)
                if connection.vendor == "sqlite":
                    self.assertTrue(list(left[0].glob("*.sqlite3")), "no copies?")
                # A run of anything else, in the same temporary directory.
                later = manage("multidb", *PARALLEL, env=shared)
                self.assertEqual(later.returncode, 0, later.output)
                self.assertEqual(list(Path(tmp).iterdir()), [], later.output)
            finally:
                self.drop_leftover_databases()

    def wait_for_workers_to_end(self, tag: str) -> None:
        deadline = time.monotonic() + 30
        while _tagged_pids(tag):
            self.assertLess(time.monotonic(), deadline, "workers outlived their run")
            time.sleep(0.1)

    def drop_leftover_databases(self) -> None:
        left = server_databases(connection, e2e_databases())
        with connection.cursor() as cursor:
            for name in left:
                cursor.execute(f"DROP DATABASE {connection.ops.quote_name(name)}")
        self.assertEqual(left, set(), "the later run left databases")


class OldCloneTests(SimpleTestCase):
    """A database already named like a clone: asked about, as Django asks
    about its own test database, and dropped only on "yes" or --noinput."""

    databases = {"default"}

    def setUp(self):
        super().setUp()
        self.folder = Path(tempfile.mkdtemp(prefix="old-clones-"))
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        self.env = {"SQLITE_DIR": str(self.folder), "SQLITE_TEST_FILES": "1"}
        if connection.vendor == "sqlite":
            self.name = str(self.folder / f"test_e2e{db_suffix()}_1.sqlite3")
        else:
            self.name = f"test_e2e{db_suffix()}_1"
        self.addCleanup(self.drop_old)

    def make_old(self):
        if connection.vendor == "sqlite":
            Path(self.name).write_bytes(b"")
            return
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(self.name)}")

    def old_exists(self) -> bool:
        if connection.vendor == "sqlite":
            return Path(self.name).exists()
        return self.name in server_databases(connection, e2e_databases())

    def drop_old(self):
        if connection.vendor != "sqlite":
            with connection.cursor() as cursor:
                quoted = connection.ops.quote_name(self.name)
                cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")

    def left(self) -> set[str]:
        if connection.vendor == "sqlite":
            return {p.name for p in self.folder.glob("test_*")}
        return server_databases(connection, e2e_databases())

    def run_with(self, *args, answers=None):
        return start(
            ["manage.py", "test", "multidb", *args], env=self.env, answers=answers
        ).finish()

    def test_no_cancels_the_run_and_keeps_it(self):
        self.make_old()
        result = self.run_with(*PARALLEL, answers="no\n")
        self.assertEqual(result.returncode, 1, result.output)
        self.assertIn(f"a database named {self.name!r} already exists", result.output)
        self.assertIn(
            f"Type 'yes' if you would like to try deleting the test database "
            f"'{self.name}', or 'no' to cancel: Tests cancelled.",
            result.output,
        )
        self.assertNotIn("Ran ", result.output)
        self.assertTrue(self.old_exists())
        # The test databases this run made are gone; that one stays.
        self.assertEqual(self.left(), {Path(self.name).name})

    def test_yes_drops_it_and_the_run_goes_on(self):
        self.make_old()
        result = self.run_with(*PARALLEL, answers="yes\n")
        self.assertEqual(result.returncode, 0, result.output)
        self.assertIn(
            f"'{self.name}', or 'no' to cancel: Destroying old test database "
            f"for alias 'default'...\n",
            result.output,
        )
        self.assertEqual(self.left(), set())

    def test_noinput_drops_it_with_djangos_words_also_with_keepdb(self):
        for keepdb in ((), ("--keepdb",)):
            with self.subTest(keepdb=keepdb):
                self.make_old()
                result = self.run_with("--noinput", *PARALLEL, *keepdb)
                self.assertEqual(result.returncode, 0, result.output)
                out = result.output
                destroyed = out.find(
                    f"a database named {self.name!r} already exists.\n"
                    f"Destroying old test database for alias 'default'...\n"
                )
                self.assertNotEqual(destroyed, -1, out)
                self.assertLess(destroyed, out.find("Cloning test database"))
                self.assertNotIn("Type 'yes'", out)
                if keepdb:
                    # A clone of this run's now has the name, kept for the
                    # next; a parallel run without --keepdb drops it, and the
                    # kept test databases, without asking.
                    self.assertTrue(self.old_exists())
                    again = self.run_with("--noinput", *PARALLEL)
                    self.assertEqual(again.returncode, 0, again.output)
                    self.assertNotIn(f"named {self.name!r}", again.output)
                    self.assertNotIn("Type 'yes'", again.output)
                self.assertFalse(self.old_exists())
                self.assertEqual(self.left(), set())
