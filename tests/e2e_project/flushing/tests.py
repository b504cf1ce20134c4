"""How TransactionTestCase's flush empties the tables (EXPECT_FAST_FLUSH)."""

import os

from django.contrib.auth.models import Group, User
from django.core.management.color import no_style
from django.db import connection
from django.test import TransactionTestCase


class Flushing(TransactionTestCase):
    def test_a_writes_related_rows(self):
        user = User.objects.create(username="u")
        user.groups.add(Group.objects.create(name="g"))

    def test_b_finds_every_table_empty(self):
        self.assertFalse(User.objects.exists())
        self.assertFalse(Group.objects.exists())
        self.assertFalse(User.groups.through.objects.exists())

    def test_c_flush_statement(self):
        statements = connection.ops.sql_flush(no_style(), ["auth_group"])
        fast = (
            connection.vendor == "postgresql" and os.environ["EXPECT_FAST_FLUSH"] == "1"
        )
        block = [s.startswith("DO $flush$") for s in statements]
        self.assertEqual(block, [True] if fast else [False] * len(statements))


class FlushingAgain(Flushing):
    """A second class, so that a parallel run has two units."""
