"""concurrent_runner.databases, in-process: which SQLite test databases
become files, and making and dropping clones side by side."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

from django.db import OperationalError, connections
from django.db.utils import ConnectionHandler
from django.test import SimpleTestCase, TransactionTestCase

from concurrent_runner import databases

SQLITE = "django.db.backends.sqlite3"


class FileBackedSqliteTests(SimpleTestCase):
    """Every spelling of an in-memory test database gets a file; others
    keep theirs, and the TEST settings are given back after the run."""

    def handler(self) -> ConnectionHandler:
        return ConnectionHandler(
            {
                # No TEST NAME: Django makes it in-memory.
                "default": {"ENGINE": SQLITE, "NAME": "app.sqlite3"},
                # In memory outside tests too, and said again for tests.
                "secondary": {
                    "ENGINE": SQLITE,
                    "NAME": ":memory:",
                    "TEST": {"NAME": ":memory:"},
                },
                "shared": {
                    "ENGINE": SQLITE,
                    "NAME": "x.sqlite3",
                    "TEST": {"NAME": "file:shared?mode=memory&cache=shared"},
                },
                "named": {
                    "ENGINE": SQLITE,
                    "NAME": "y.sqlite3",
                    "TEST": {"NAME": "own_test.sqlite3"},
                },
            }
        )

    def test_in_memory_aliases_get_a_file_each_and_are_restored(self) -> None:
        handler = self.handler()
        with (
            tempfile.TemporaryDirectory() as tmp,
            mock.patch.object(databases, "connections", handler),
        ):
            with databases.file_backed_sqlite(Path(tmp)):
                names = {
                    alias: handler[alias].settings_dict["TEST"]["NAME"]
                    for alias in handler
                }
            after = {
                alias: handler[alias].settings_dict["TEST"]["NAME"] for alias in handler
            }
        self.assertEqual(
            names,
            {
                "default": f"{tmp}/test_default.sqlite3",
                "secondary": f"{tmp}/test_secondary.sqlite3",
                "shared": f"{tmp}/test_shared.sqlite3",
                "named": "own_test.sqlite3",
            },
        )
        self.assertEqual(
            after,
            {
                "default": None,
                "secondary": ":memory:",
                "shared": "file:shared?mode=memory&cache=shared",
                "named": "own_test.sqlite3",
            },
        )


class InThreadsTests(SimpleTestCase):
    def test_results_in_order_from_concurrent_threads(self):
        barrier = threading.Barrier(3, timeout=10)

        def job(n: int) -> tuple[int, str]:
            barrier.wait()  # all three are running at once, or this times out
            return n * 10, threading.current_thread().name

        results = databases._in_threads(job, [(1,), (2,), (3,)])
        self.assertEqual([value for value, _ in results], [10, 20, 30])
        self.assertEqual(len({name for _, name in results}), 3)

    def test_first_error_raised_after_the_started_jobs_end(self):
        finished = []

        def job(n: int) -> None:
            if n == 1:
                raise ValueError("clone 1 failed")
            finished.append(n)

        with self.assertRaisesMessage(ValueError, "clone 1 failed"):
            databases._in_threads(job, [(1,), (2,), (3,)])
        self.assertEqual(sorted(finished), [2, 3])

    def test_no_jobs(self):
        self.assertEqual(databases._in_threads(print, []), [])


class CloningTests(SimpleTestCase):
    """The order and the errors of background cloning, without a server."""

    old_config = [(connections["default"], "unused", True)]

    def cloning(self, fail_slot: int = 0) -> tuple[databases.Cloning, list[int]]:
        made: list[int] = []

        def clone(alias: str, slot: int, verbosity: int) -> None:
            if slot == fail_slot:
                raise ValueError(f"clone {slot} failed")
            time.sleep(0.05 if slot == 1 else 0.01)

        with mock.patch.object(databases, "_clone", clone):
            cloning = databases.Cloning(self.old_config, 4, 0, made.append)
            with (
                self.assertRaises(ValueError) if fail_slot else contextlib.nullcontext()
            ):
                cloning.wait()
        return cloning, made

    def test_slot_one_alone_first_then_each_slot_as_it_is_made(self):
        cloning, made = self.cloning()
        self.assertEqual(made[0], 1)
        self.assertEqual(sorted(made), [1, 2, 3, 4])
        self.assertTrue(cloning.done)
        self.assertIsNone(cloning.failure())
        self.assertGreaterEqual(cloning.took, 0.05)

    def test_a_failed_clone_is_raised_and_its_slot_never_ready(self):
        cloning, made = self.cloning(fail_slot=3)
        self.assertEqual(sorted(made), [1, 2, 4])
        self.assertIsInstance(cloning.failure(), ValueError)


class CloneAndDestroyTests(TransactionTestCase):
    """Against the database the suite runs on (DB_VENDOR)."""

    available_apps = ["concurrent_runner"]

    def test_every_slot_gets_a_clone_and_every_clone_goes(self):
        connection = connections["default"]
        old_config = [(connection, "unused", True)]
        slots = 3
        clones = [
            connection.creation.get_test_db_clone_settings(str(slot))["NAME"]
            for slot in range(1, slots + 1)
        ]
        self.addCleanup(databases.destroy_clones, old_config, slots, 0, attempts=1)
        databases.Cloning(old_config, slots, verbosity=0).wait()
        for slot, name in enumerate(clones, 1):
            clone = connection.copy()
            clone.settings_dict.update(
                connection.creation.get_test_db_clone_settings(str(slot))
            )
            try:
                with clone.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    self.assertEqual(cursor.fetchone()[0], 1, name)
            finally:
                clone.close()
        self.assertEqual(databases.destroy_clones(old_config, slots, 0), [])
        for slot in range(1, slots + 1):
            clone = connection.copy()
            clone.settings_dict.update(
                connection.creation.get_test_db_clone_settings(str(slot))
            )
            with self.subTest(slot=slot), self.assertRaises(OperationalError):
                clone.ensure_connection()
                if clone.vendor == "sqlite":  # connecting makes an empty file
                    with clone.cursor() as cursor:
                        cursor.execute("SELECT * FROM django_content_type")
            clone.close()


class TuneSqliteTests(SimpleTestCase):
    def test_tuning_one_directory_twice_connects_once(self):
        from django.db.backends.signals import connection_created

        before = len(connection_created.receivers)
        uid = databases.tune_sqlite("/nonexistent/run")
        self.addCleanup(connection_created.disconnect, dispatch_uid=uid)
        databases.tune_sqlite("/nonexistent/run")  # as a forked worker does
        self.assertEqual(len(connection_created.receivers), before + 1)

    def test_only_files_in_the_run_directory(self):
        def conn(name: str, vendor: str = "sqlite") -> mock.Mock:
            return mock.Mock(vendor=vendor, settings_dict={"NAME": name})

        self.assertTrue(databases._is_run_file(conn("/run/x.sqlite3"), "/run"))
        self.assertFalse(databases._is_run_file(conn("/run2/x.sqlite3"), "/run"))
        self.assertFalse(databases._is_run_file(conn("/run/x", "postgresql"), "/run"))
        self.assertFalse(databases._is_run_file(conn("/run/x.sqlite3"), ""))
