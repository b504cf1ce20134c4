"""End-to-end: what a run killed with SIGKILL left behind is cleared by the
next run."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase

from concurrent_runner.rundirs import PREFIX

from .e2e import _tagged_pids, e2e_databases, manage, server_databases, start_manage

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
