"""End-to-end: with --keepdb the workers' clones are kept, used again while
they match the test database, and made again when it changed (a new
migration) or when the run that used them last did not end normally."""

from __future__ import annotations

import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase

from .e2e import (
    _tagged_pids,
    db_suffix,
    e2e_databases,
    manage,
    server_databases,
    start_manage,
)

PARALLEL = ("--parallel-groups", "2", "-v", "2")
LABEL = "keptclones"


class KeptClonesTests(SimpleTestCase):
    databases = {"default"}  # to list and drop the server's databases

    def setUp(self) -> None:
        super().setUp()
        # On SQLite the test databases are files (TEST NAME), as a project
        # must have them for --keepdb to keep anything.
        self.folder = Path(tempfile.mkdtemp(prefix="kept-clones-"))
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        self.env = {"SQLITE_DIR": str(self.folder), "SQLITE_TEST_FILES": "1"}
        self.addCleanup(self.drop_all)

    def run_kept(self, *args: str, v2: bool = False):
        env = {**self.env, "KEPT_V2": "1" if v2 else "0"}
        result = manage(LABEL, "--keepdb", *PARALLEL, *args, env=env)
        self.assertEqual(result.returncode, 0, result.output)
        self.assertEqual(result.ran, 8, result.output)
        return result

    def clone_name(self, slot: int) -> str:
        if connection.vendor == "sqlite":
            return str(self.folder / f"test_e2e{db_suffix()}_{slot}.sqlite3")
        return f"test_e2e{db_suffix()}_{slot}"

    def used(self, output: str) -> list[str]:
        return re.findall(
            r"Using existing clone for alias 'default' \('(.*?)'\)", output
        )

    def made_again(self, output: str) -> dict[str, str]:
        return dict(
            re.findall(
                r"Making clone for alias 'default' \('(.*?)'\) again: (.*)\.\n",
                output,
            )
        )

    def drop_all(self) -> None:
        if connection.vendor == "sqlite":
            return  # the folder goes
        with connection.cursor() as cursor:
            for name in server_databases(connection, e2e_databases()):
                cursor.execute(f"DROP DATABASE {connection.ops.quote_name(name)}")

    def test_used_again_when_nothing_changed(self):
        first = self.run_kept()
        self.assertEqual(first.output.count("Cloning test database"), 2, first.output)
        self.assertEqual(self.used(first.output), [])
        second = self.run_kept()
        # Every slot's clone, as Django says it, and none made: the
        # TestCases still find the migrations' rows, although a
        # TransactionTestCase flushed their clone in the first run.
        self.assertEqual(
            sorted(self.used(second.output)),
            [self.clone_name(1), self.clone_name(2)],
            second.output,
        )
        self.assertNotIn("Cloning test database", second.output)

    def test_made_again_after_a_new_migration(self):
        self.run_kept()
        second = self.run_kept(v2=True)  # its TestCases expect the v2 row
        self.assertIn("Applying keptclones.0002_more... OK", second.output)
        self.assertEqual(self.used(second.output), [], second.output)
        self.assertEqual(
            self.made_again(second.output),
            {
                self.clone_name(slot): "the test database changed since it was made"
                for slot in (1, 2)
            },
        )
        self.assertEqual(second.output.count("Cloning test database"), 2)
        third = self.run_kept(v2=True)  # and the new clones are kept
        self.assertEqual(len(self.used(third.output)), 2, third.output)

    def test_a_clone_left_half_made_by_a_killed_run_is_made_again(self):
        self.run_kept()
        marker = self.folder / "half-made"
        killed = start_manage(
            LABEL, "--keepdb", *PARALLEL,
            env={**self.env, "KEPT_V2": "1", "E2E_HALF_CLONE": str(marker)},
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not marker.exists():
            if killed.process.poll() is not None or time.monotonic() > deadline:
                killed.process.kill()
                self.fail(f"never half made a clone:\n{killed.output()}")
            time.sleep(0.05)
        killed.send(signal.SIGKILL)
        killed.finish(check_clean=False)
        deadline = time.monotonic() + 30
        while _tagged_pids(killed.tag):
            self.assertLess(time.monotonic(), deadline, "workers outlived their run")
            time.sleep(0.1)
        # Clone 1 lacks its table; had it been used, its TestCases would
        # fail (run_kept checks they pass).
        later = self.run_kept(v2=True)
        self.assertEqual(self.used(later.output), [], later.output)
        name = self.clone_name(1)
        if connection.vendor == "sqlite":
            # Its record was marked before the file was replaced.
            self.assertEqual(
                self.made_again(later.output).get(name),
                "a run that was making it did not finish",
                later.output,
            )
        else:
            # The server's record went with the database it dropped to make
            # it again: a database named like a clone, with no record of
            # ours, is dropped as an old one (here --noinput; else asked).
            self.assertIn(
                f"a database named {name!r} already exists.\n"
                f"Destroying old test database for alias 'default'",
                later.output,
            )
