"""concurrent_runner.databases.kept: the records of kept clones, and which a
--keepdb run may use as they are."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path
from unittest import mock

from django.db import connection, connections
from django.db.utils import ConnectionHandler
from django.test import SimpleTestCase

from concurrent_runner.databases import kept
from concurrent_runner.databases.kept import Record


class RecordTests(SimpleTestCase):
    def test_round_trip(self):
        for record in (
            Record("making"),
            Record("in-use"),
            Record("ready", "ab12", "", False),
            Record("ready", "ab12", "cd34", True),
        ):
            with self.subTest(record=record):
                self.assertEqual(Record.loads(record.dumps()), record)

    def test_not_ours(self):
        for text in (None, "", "a comment of the user's", "concurrent-runner-x"):
            self.assertIsNone(Record.loads(text))

    def test_ours_but_unknown_is_never_usable(self):
        record = Record.loads("concurrent-runner-clone state=half fp=ab12")
        self.assertIsNotNone(record)
        self.assertFalse(record.matches("ab12", ""))

    def test_matches(self):
        ready = Record("ready", "fp", "data")
        self.assertTrue(ready.matches("fp", "data"))
        self.assertFalse(ready.matches("other", "data"))
        self.assertFalse(ready.matches("fp", "changed"))
        # A run that serialized nothing cannot compare the contents.
        self.assertTrue(ready.matches("fp", ""))
        self.assertTrue(Record("ready", "fp").matches("fp", "data"))
        self.assertFalse(Record("in-use", "fp").matches("fp", ""))
        self.assertFalse(Record("making", "fp").matches("fp", ""))


class SQLiteKeptClonesTests(SimpleTestCase):
    """Clones of a file test database, their records in files beside them."""

    def setUp(self):
        super().setUp()
        self.folder = Path(tempfile.mkdtemp(prefix="kept-clones-"))
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        self.test_name = str(self.folder / "test_probe.sqlite3")
        with sqlite3.connect(self.test_name) as db:
            db.execute("CREATE TABLE django_migrations (app, name, applied)")
            db.execute("INSERT INTO django_migrations VALUES ('a', '0001', '')")
            db.execute("CREATE TABLE t (x)")
        sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": self.test_name}
        handler = ConnectionHandler({"default": sqlite, "probe": sqlite})
        patcher = mock.patch.object(kept, "connections", handler)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.probe = handler["probe"]
        self.addCleanup(self.probe.close)

    def clone(self, slot: int) -> str:
        name = kept.clone_name("probe", slot)
        shutil.copy(self.test_name, name)
        return name

    def test_a_file_in_the_run_directory_is_not_kept(self):
        self.assertTrue(kept.keeps_clones(self.probe, "/somewhere/else"))
        self.assertFalse(kept.keeps_clones(self.probe, self.folder))

    def test_fingerprint_follows_migrations_and_rows(self):
        before = kept.fingerprint(self.probe)
        self.assertEqual(kept.fingerprint(self.probe), before)
        with self.probe.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
        rows = kept.fingerprint(self.probe)
        self.assertNotEqual(rows, before)
        with self.probe.cursor() as cursor:
            cursor.execute("INSERT INTO django_migrations VALUES ('a', '0002', '')")
        self.assertNotIn(kept.fingerprint(self.probe), (before, rows))

    def test_records_live_beside_the_clone(self):
        self.assertEqual(kept.read_records("probe", [1]), {1: None})
        name = self.clone(1)
        self.assertEqual(kept.read_records("probe", [1]), {1: None})  # not ours
        kept.write_records("probe", {1: Record("ready", "fp")})
        self.assertEqual(kept.read_records("probe", [1]), {1: Record("ready", "fp")})
        kept.forget_record("probe", 1)
        self.assertEqual(kept.read_records("probe", [1]), {1: None})
        # A record whose clone is gone says nothing.
        kept.write_records("probe", {1: Record("ready", "fp")})
        Path(name).unlink()
        self.assertEqual(kept.read_records("probe", [1]), {1: None})

    def test_decide(self):
        fp = kept.fingerprint(self.probe)
        for slot in (1, 2, 3, 4, 5, 6):
            self.clone(slot)
        kept.write_records(
            "probe",
            {
                1: Record("ready", fp),
                2: Record("ready", "stale"),
                3: Record("in-use"),
                4: Record("making"),
                5: Record("ready", fp, flushed=True),
                # 6: a database named like a clone, with no record
            },
        )
        for restorable, reused in (
            (set(), {1: []}),
            ({"probe"}, {1: [], 5: ["probe"]}),
        ):
            with self.subTest(restorable=restorable):
                decided = kept.decide(
                    ["probe"], [1, 2, 3, 4, 5, 6, 7], "/run", restorable
                )
                self.assertEqual(decided.reused, reused)
                self.assertEqual(
                    decided.remade,
                    {
                        2: "the test database changed since it was made",
                        3: "the run that used it last did not end normally",
                        4: "a run that was making it did not finish",
                        **(
                            {}
                            if restorable
                            else {5: "a TransactionTestCase flushed it"}
                        ),
                        6: "there is none",
                        7: "there is none",
                    },
                )
                self.assertEqual(
                    decided.ours, {kept.clone_name("probe", s) for s in (1, 2, 3, 4, 5)}
                )
        self.assertEqual(
            kept.ours_among(["probe"], [1, 6, 7], "/run"), {kept.clone_name("probe", 1)}
        )


class ServerRecordTests(SimpleTestCase):
    """PostgreSQL's COMMENT ON DATABASE, MariaDB's database COMMENT."""

    databases = {"default"}

    def setUp(self):
        super().setUp()
        if connection.vendor == "sqlite" or not kept.keeps_clones(connection, "/"):
            self.skipTest("DB_VENDOR=postgresql or MariaDB keeps clones on a server")
        probe = {**connections["default"].settings_dict}
        probe["NAME"] = f"test_kept_{uuid.uuid4().hex[:10]}"
        handler = ConnectionHandler({"default": probe, "probe": probe})
        patcher = mock.patch.object(kept, "connections", handler)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.probe = handler["probe"]
        self.addCleanup(self.probe.close)
        self.name = kept.clone_name("probe", 1)
        with self.probe._nodb_cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.probe.ops.quote_name(self.name)}")
        self.addCleanup(self.drop)

    def drop(self):
        with self.probe._nodb_cursor() as cursor:
            cursor.execute(
                f"DROP DATABASE IF EXISTS {self.probe.ops.quote_name(self.name)}"
            )

    def test_records_are_kept_with_the_database(self):
        self.assertEqual(kept.read_records("probe", [1, 2]), {1: None, 2: None})
        record = Record("ready", "0123abcd", "ef", True)
        kept.write_records("probe", {1: record})
        self.assertEqual(kept.read_records("probe", [1, 2]), {1: record, 2: None})
        kept.write_records("probe", {1: Record("in-use")})
        self.assertEqual(kept.read_records("probe", [1]), {1: Record("in-use")})
        self.drop()  # and the record goes with it
        self.assertEqual(kept.read_records("probe", [1]), {1: None})
