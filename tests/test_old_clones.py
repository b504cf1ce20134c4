"""concurrent_runner.databases.clones.clear_old_clones: a database already
named like a clone is dropped only as Django drops an old test database:
after asking, or with --noinput, saying so."""

from __future__ import annotations

import io
import shutil
import tempfile
import uuid
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any
from unittest import mock

from django.db import connection, connections
from django.db.utils import ConnectionHandler
from django.test import SimpleTestCase

from concurrent_runner.databases.clones import clear_old_clones, database_exists

PROMPT = (
    "Type 'yes' if you would like to try deleting the test database '{}', "
    "or 'no' to cancel: "
)


class OldClonesMixin:
    """The cases, for a connection whose clone names this test owns."""

    probe: Any  # the connection whose test database gets clones

    def make_database(self, name: str) -> None:
        raise NotImplementedError

    def clone_name(self, slot: int) -> str:
        return self.probe.creation.get_test_db_clone_settings(str(slot))["NAME"]

    def clear(self, slots=(1, 2), *, interactive: bool, answer: str = "", verbosity=1):
        err = io.StringIO()
        config = [(self.probe, "real name", True)]
        with (
            redirect_stderr(err),
            mock.patch("builtins.input", return_value=answer) as asked,
        ):
            try:
                clear_old_clones(
                    config, slots, interactive=interactive, verbosity=verbosity
                )
            finally:
                self.output = err.getvalue()
        return asked

    def test_nothing_there_nothing_said(self) -> None:
        asked = self.clear(interactive=True)
        asked.assert_not_called()
        self.assertEqual(self.output, "")

    def test_noinput_drops_it_with_djangos_words(self) -> None:
        self.make_database(self.clone_name(2))
        asked = self.clear(interactive=False, verbosity=2)
        asked.assert_not_called()
        self.assertFalse(database_exists(self.probe, self.clone_name(2)))
        self.assertIn(
            f"a database named {self.clone_name(2)!r} already exists", self.output
        )
        self.assertIn(
            f"Destroying old test database for alias '{self.probe.alias}' "
            f"('{self.clone_name(2)}')...",
            self.output,
        )

    def test_interactive_asks_and_drops_on_yes(self) -> None:
        self.make_database(self.clone_name(1))
        asked = self.clear(interactive=True, answer="yes")
        asked.assert_called_once_with(PROMPT.format(self.clone_name(1)))
        self.assertFalse(database_exists(self.probe, self.clone_name(1)))
        self.assertIn(
            f"Destroying old test database for alias '{self.probe.alias}'...",
            self.output,
        )

    def test_interactive_anything_but_yes_cancels_and_keeps_it(self) -> None:
        self.make_database(self.clone_name(1))
        for answer in ("no", "", "y"):
            with self.subTest(answer=answer):
                with self.assertRaises(SystemExit) as caught:
                    self.clear(interactive=True, answer=answer)
                self.assertEqual(caught.exception.code, 1)
                self.assertTrue(database_exists(self.probe, self.clone_name(1)))
                self.assertTrue(self.output.endswith("Tests cancelled.\n"))
                self.assertNotIn("Destroying", self.output)


class SQLiteFileTests(OldClonesMixin, SimpleTestCase):
    """A SQLite test database in a file (TEST NAME): clones beside it."""

    def setUp(self) -> None:
        super().setUp()
        folder = Path(tempfile.mkdtemp(prefix="old-clones-"))
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        sqlite = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(folder / "test_probe.sqlite3"),
        }
        handler = ConnectionHandler({"default": sqlite, "probe": sqlite})
        self.probe = handler["probe"]
        self.addCleanup(self.probe.close)

    def make_database(self, name: str) -> None:
        Path(name).write_bytes(b"")

    def test_clone_names(self) -> None:
        self.assertTrue(self.clone_name(1).endswith("test_probe_1.sqlite3"))


class ServerTests(OldClonesMixin, SimpleTestCase):
    """PostgreSQL or MariaDB/MySQL, whichever this run uses (DB_VENDOR)."""

    databases = {"default"}

    def setUp(self) -> None:
        super().setUp()
        if connection.vendor not in ("postgresql", "mysql"):
            self.skipTest("DB_VENDOR=postgresql or mysql runs it on a server")
        self.probe = connections["default"].copy()
        # A test database of this test's own, whose clones nobody else has.
        self.probe.settings_dict["NAME"] = f"test_probe_{uuid.uuid4().hex[:10]}"
        self.addCleanup(self.probe.close)
        self.made: list[str] = []
        self.addCleanup(self.drop_made)

    def make_database(self, name: str) -> None:
        with self.probe._nodb_cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.probe.ops.quote_name(name)}")
        self.made.append(name)

    def drop_made(self) -> None:
        with self.probe._nodb_cursor() as cursor:
            for name in self.made:
                quoted = self.probe.ops.quote_name(name)
                cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")
