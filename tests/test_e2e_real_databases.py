"""End-to-end: the real databases are never touched, by tests or by
concurrent calls, serially or in parallel (README's promise; issue 20.1).

The e2e project's real databases are made and migrated here (on SQLite, as
files in a folder of this test's own), so that anything written to them
would be seen; the project's own test databases are made by the runs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase

from .e2e import db_suffix, manage, run

MODES = (("--parallel-groups", "2"), ("--parallel-groups", "1"))
COUNT = (
    "import json; from multidb.models import Item; print(json.dumps("
    "{a: sorted(Item.objects.using(a).values_list('name', flat=True)) "
    "for a in ('default', 'other')}))"
)


class RealDatabasesTests(SimpleTestCase):
    databases = {"default"}  # to make the servers' real databases

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.folder = Path(tempfile.mkdtemp(prefix="real-databases-"))
        cls.env = {"SQLITE_DIR": str(cls.folder)}
        cls.names = [f"e2e{db_suffix()}", f"e2e_other{db_suffix()}"]
        cls.addClassCleanup(shutil.rmtree, cls.folder, ignore_errors=True)
        cls.addClassCleanup(cls.drop_real)
        if connection.vendor != "sqlite":
            with connection.cursor() as cursor:
                for name in cls.names:
                    cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
        for alias in ("default", "other"):
            migrated = run(
                ["manage.py", "migrate", "--database", alias, "-v", "0"], env=cls.env
            )
            assert migrated.returncode == 0, migrated.output

    @classmethod
    def drop_real(cls):
        if connection.vendor != "sqlite":
            with connection.cursor() as cursor:
                for name in cls.names:
                    quoted = connection.ops.quote_name(name)
                    cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")

    def real_rows(self) -> dict[str, list[str]]:
        result = run(["manage.py", "shell", "-c", COUNT], env=self.env)
        self.assertEqual(result.returncode, 0, result.output)
        return json.loads(result.output.strip().splitlines()[-1])

    def assert_untouched_by(self, *labels: str) -> None:
        before = self.real_rows()
        for alias in ("default", "other"):
            self.assertIn("seeded", before[alias])  # migrated, and readable
        for mode in MODES:
            with self.subTest(labels=labels, mode=mode):
                result = manage(*labels, "-v", "2", *mode, env=self.env)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(self.real_rows(), before)

    def test_calls_from_a_test_without_default_cannot_reach_it(self):
        # Alone, so that the run makes no test database for "default".
        self.assert_untouched_by("multidb.forbidden")

    def test_a_forked_workers_first_call_uses_a_forked_call_server(self):
        # Its calls still fail on "default" as the test does (the module's
        # other tests), and the real databases stay untouched; with forking
        # off, or in the test process, the call server is a fresh
        # interpreter, as before.
        before = self.real_rows()
        for mode, fork, expected in (
            (("--parallel-groups", "2"), "1", "forked"),
            (("--parallel-groups", "2"), "0", "fresh"),
            (("--parallel-groups", "1"), "1", "fresh"),
        ):
            with self.subTest(mode=mode, fork=fork):
                env = {
                    **self.env,
                    "E2E_FORK_WORKERS": fork,
                    "EXPECT_CALL_SERVER": expected,
                }
                result = manage("multidb.forbidden", "-v", "2", *mode, env=env)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(
                    result.statuses()[
                        "multidb.forbidden.CallServerKind."
                        "test_the_call_server_is_the_one_expected"
                    ],
                    "ok",
                )
                self.assertEqual(self.real_rows(), before)

    def test_tests_and_calls_on_every_alias_stay_in_the_test_databases(self):
        self.assert_untouched_by("multidb")
