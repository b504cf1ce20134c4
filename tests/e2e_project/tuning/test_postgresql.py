"""What the runner does to its PostgreSQL test databases
(EXPECT_FAST_POSTGRESQL)."""

import os

from django.db import connection
from django.test import TransactionTestCase


class PostgresqlTuning(TransactionTestCase):
    def test_synchronous_commit(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('synchronous_commit'), reset_val "
                "FROM pg_settings WHERE name = 'synchronous_commit'"
            )
            current, default = cursor.fetchone()
        if default == "off":
            self.skipTest("the server has synchronous_commit off already")
        expected = "off" if os.environ["EXPECT_FAST_POSTGRESQL"] == "1" else default
        self.assertEqual(current, expected)

    def test_a_commit_is_seen_at_once_by_another_connection(self):
        from django.contrib.auth.models import Group

        Group.objects.create(name="seen")
        other = connection.copy()
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT name FROM auth_group")
                self.assertEqual(cursor.fetchall(), [("seen",)])
        finally:
            other.close()


class PostgresqlTuningAgain(PostgresqlTuning):
    """A second class, so that a parallel run has two units."""
