"""What the runner does to its own SQLite test databases (EXPECT_SYNCHRONOUS,
EXPECT_JOURNAL_MODE)."""

import os

from django.db import connection
from django.test import TransactionTestCase


class SqliteTuning(TransactionTestCase):
    def test_synchronous(self):
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous")
            value = cursor.fetchone()[0]
        self.assertEqual(str(value), os.environ["EXPECT_SYNCHRONOUS"])

    def test_journal_mode(self):
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            value = cursor.fetchone()[0]
        self.assertEqual(value, os.environ["EXPECT_JOURNAL_MODE"])


class SqliteTuningAgain(SqliteTuning):
    """A second class, so that a parallel run has two units."""
