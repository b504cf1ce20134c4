"""concurrent_runner.databases.flush: TransactionTestCase's flush with
DELETE on PostgreSQL.

Our own suite runs under the runner, so with the default setting every
TransactionTestCase here already flushes this way on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import unittest

from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.core.management.color import no_style
from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from concurrent_runner.databases import flush

try:
    from django.db.backends.postgresql.operations import DatabaseOperations
except ImportError:  # pragma: no cover - psycopg2 is installed for our tests
    DatabaseOperations = None


def django_flush() -> None:
    """The flush TransactionTestCase runs after each test."""
    call_command(
        "flush",
        verbosity=0,
        interactive=False,
        reset_sequences=False,
        allow_cascade=False,
        inhibit_post_migrate=True,
    )


class Installed:
    """Mixin: the DELETE flush installed for the test, as the runner does."""

    def setUp(self):
        super().setUp()
        if flush.install():
            self.addCleanup(flush.uninstall)


@unittest.skipIf(DatabaseOperations is None, "psycopg2 is not installed")
class StatementTests(Installed, SimpleTestCase):
    def statements(self, tables, **kwargs):
        return DatabaseOperations(connection=None).sql_flush(  # type: ignore[arg-type]
            no_style(), tables, **kwargs
        )

    def test_a_plain_flush_becomes_one_block_of_deletes(self):
        (block,) = self.statements(["auth_group", "it's"])
        self.assertTrue(block.startswith("DO $flush$"), block)
        self.assertIn('  DELETE FROM "auth_group";', block)
        self.assertIn("""ARRAY['"auth_group"', '"it''s"']::regclass[]""", block)
        # Django's own statement is the fallback, inside the block.
        self.assertEqual(block.count("""TRUNCATE "auth_group", "it's";"""), 2)

    def test_sequence_resets_and_cascades_stay_djangos(self):
        self.assertEqual(
            self.statements(["a"], reset_sequences=True),
            ['TRUNCATE "a" RESTART IDENTITY;'],
        )
        self.assertEqual(
            self.statements(["a"], allow_cascade=True), ['TRUNCATE "a" CASCADE;']
        )
        self.assertEqual(self.statements([]), [])

    def test_install_is_idempotent_and_uninstall_restores(self):
        patched = DatabaseOperations.sql_flush
        self.assertFalse(flush.install())
        self.assertIs(DatabaseOperations.sql_flush, patched)
        flush.uninstall()
        try:
            self.assertEqual(self.statements(["a"]), ['TRUNCATE "a";'])
        finally:
            flush.install()

    def test_the_setting_turns_it_off(self):
        self.assertTrue(flush.fast_flush_enabled())
        with override_settings(CONCURRENT_RUNNER_FAST_FLUSH=False):
            self.assertFalse(flush.fast_flush_enabled())
            flush.uninstall()
            try:
                with flush.fast_flush():
                    self.assertEqual(self.statements(["a"]), ['TRUNCATE "a";'])
            finally:
                flush.install()


# Run in a fresh interpreter: this one has imported psycopg2 already.
WHAT_FAST_FLUSH_IMPORTS = textwrap.dedent(
    """
    import sys
    import django
    from django.conf import settings

    databases = {"default": {"ENGINE": "django.db.backends.sqlite3"}}
    if sys.argv[1] == "with-postgresql":
        databases["other"] = {"ENGINE": "django.db.backends.postgresql"}
    settings.configure(DATABASES=databases)
    django.setup()
    from concurrent_runner.databases import flush

    with flush.fast_flush():
        imported = "psycopg2" in sys.modules
        from django.db.backends.postgresql.operations import DatabaseOperations

        patched = hasattr(DatabaseOperations.sql_flush, "original")
    # Imported, patched in the block, patched after it.
    print(imported, patched, hasattr(DatabaseOperations.sql_flush, "original"))
    """
)


@unittest.skipIf(DatabaseOperations is None, "psycopg2 is not installed")
class WhenItIsInstalledTests(SimpleTestCase):
    def run_fast_flush(self, databases: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", WHAT_FAST_FLUSH_IMPORTS, databases],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout

    def test_a_run_without_postgresql_does_not_import_psycopg(self) -> None:
        self.assertEqual(self.run_fast_flush("sqlite-only"), "False False False\n")

    def test_a_run_with_postgresql_patches_for_the_block(self) -> None:
        self.assertEqual(self.run_fast_flush("with-postgresql"), "True True False\n")


class PostgresFlushTests(Installed, TransactionTestCase):
    """What the block does on a real server."""

    def setUp(self):
        if connection.vendor != "postgresql":
            self.skipTest("the DELETE flush is PostgreSQL's")
        super().setUp()

    def sql(self, *statements):
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def test_related_rows_go_whatever_the_order_of_the_tables(self):
        # auth_group comes before auth_user_groups, which points into it:
        # only a deferred check lets the block delete in that order.
        user = User.objects.create(username="u")
        user.groups.add(Group.objects.create(name="g"))
        django_flush()
        self.assertFalse(User.objects.exists())
        self.assertFalse(Group.objects.exists())
        self.assertFalse(User.groups.through.objects.exists())

    def test_sequences_go_on_as_after_truncate(self):
        first = Group.objects.create(name="a").pk
        django_flush()
        self.assertGreater(Group.objects.create(name="b").pk, first)

    def test_a_table_with_its_own_trigger_is_truncated(self):
        # A row trigger fires on DELETE, not on TRUNCATE: an audit table
        # filled by a flush would leak rows into the next test.
        self.addCleanup(
            self.sql,
            "DROP TRIGGER IF EXISTS audit_group ON auth_group",
            "DROP FUNCTION IF EXISTS audit_group()",
            "DROP TABLE IF EXISTS audit",
        )
        self.sql(
            "CREATE TABLE audit (name text)",
            "CREATE FUNCTION audit_group() RETURNS trigger AS $$ BEGIN "
            "INSERT INTO audit VALUES (OLD.name); RETURN OLD; END $$ "
            "LANGUAGE plpgsql",
            "CREATE TRIGGER audit_group BEFORE DELETE ON auth_group "
            "FOR EACH ROW EXECUTE FUNCTION audit_group()",
        )
        Group.objects.create(name="g")
        django_flush()
        self.assertFalse(Group.objects.exists())
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM audit")
            self.assertEqual(cursor.fetchone()[0], 0)

    def test_a_row_pointing_in_from_outside_fails_as_with_truncate(self):
        self.addCleanup(self.sql, "DROP TABLE IF EXISTS outside")
        self.sql("CREATE TABLE outside (g integer REFERENCES auth_group (id))")
        group = Group.objects.create(name="g")
        self.sql(f"INSERT INTO outside VALUES ({group.pk})")
        with self.assertRaisesMessage(CommandError, "couldn't be flushed"):
            django_flush()
        self.assertTrue(Group.objects.filter(pk=group.pk).exists())
        self.sql("DELETE FROM outside")
