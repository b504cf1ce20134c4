"""concurrent_runner.databases: which SQLite test databases become files."""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

from django.db.utils import ConnectionHandler
from django.test import SimpleTestCase

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
