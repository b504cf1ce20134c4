"""Cloning and dropping clones side by side (databases.py), in-process."""

from __future__ import annotations

import threading

from django.db import OperationalError, connections
from django.test import SimpleTestCase, TransactionTestCase

from concurrent_runner import databases


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
        databases.clone_all(old_config, slots, verbosity=0)
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
