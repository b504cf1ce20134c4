"""concurrent_runner.databases, in-process: which SQLite test databases
become files, and making and dropping clones side by side."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

from django.db import OperationalError, connections
from django.db.utils import ConnectionHandler
from django.test import SimpleTestCase, TransactionTestCase

from concurrent_runner.databases import clones, interrupted_setup, postgresql, sqlite

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
            mock.patch.object(sqlite, "connections", handler),
        ):
            with sqlite.file_backed_sqlite(Path(tmp)):
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

        results = clones._in_threads(job, [(1,), (2,), (3,)])
        self.assertEqual([value for value, _ in results], [10, 20, 30])
        self.assertEqual(len({name for _, name in results}), 3)

    def test_first_error_raised_after_the_started_jobs_end(self):
        finished = []

        def job(n: int) -> None:
            if n == 1:
                raise ValueError("clone 1 failed")
            finished.append(n)

        with self.assertRaisesMessage(ValueError, "clone 1 failed"):
            clones._in_threads(job, [(1,), (2,), (3,)])
        self.assertEqual(sorted(finished), [2, 3])

    def test_no_jobs(self):
        self.assertEqual(clones._in_threads(print, []), [])


class CloningTests(SimpleTestCase):
    """The order and the errors of background cloning, without a server."""

    old_config = [(connections["default"], "unused", True)]

    def cloning(
        self, fail_slot: int = 0, cloned: list[int] | None = None
    ) -> tuple[clones.Cloning, list[int]]:
        made: list[int] = []

        def clone(alias: str, slot: int, verbosity: int) -> None:
            if slot == fail_slot:
                raise ValueError(f"clone {slot} failed")
            time.sleep(0.05 if slot == 1 else 0.01)

        def on_slot(slot: int) -> None:
            if slot == 1:
                time.sleep(0.05)  # a slow thread must not let slot 2 go first
            made.append(slot)

        with mock.patch.object(clones, "_clone", clone):
            cloning = clones.Cloning(self.old_config, 4, 0, on_slot, cloned)
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

    def test_a_slot_without_clones_is_ready_once_every_clone_is_made(self):
        _cloning, made = self.cloning(cloned=[1, 2, 3])
        self.assertEqual(made[0], 1)
        self.assertEqual(sorted(made[1:3]), [2, 3])
        self.assertEqual(made[3:], [4])

    def test_a_slot_without_clones_waits_for_a_failed_one_forever(self):
        _cloning, made = self.cloning(fail_slot=2, cloned=[1, 2, 3])
        self.assertEqual(sorted(made), [1, 3])

    def test_nothing_to_clone_makes_every_slot_ready_at_once(self):
        cloning, made = self.cloning(cloned=[])
        self.assertEqual(made, [1, 2, 3, 4])
        self.assertTrue(cloning.done)
        self.assertIsNotNone(cloning.took)


class CloneSlotsTests(SimpleTestCase):
    def test_the_last_slot_works_on_the_test_databases(self):
        self.assertEqual(clones.clone_slots(4, keepdb=False), [1, 2, 3])
        self.assertEqual(clones.clone_slots(1, keepdb=False), [])

    def test_keepdb_clones_for_every_slot(self):
        self.assertEqual(clones.clone_slots(4, keepdb=True), [1, 2, 3, 4])

    def test_slot_settings_name_the_clone_or_the_test_database(self):
        connection = connections["default"]
        old_config = [(connection, "unused", True)]
        test_name = connection.settings_dict["NAME"]
        clone = clones.slot_settings(old_config, 2)["default"]
        itself = clones.slot_settings(old_config, 3, cloned=False)["default"]
        self.assertEqual(
            clone["NAME"], connection.creation.get_test_db_clone_settings("2")["NAME"]
        )
        self.assertNotEqual(clone["NAME"], test_name)
        self.assertEqual(itself, connection.settings_dict)
        self.assertIsNot(itself, connection.settings_dict)  # a copy


class DestroyTestDatabasesTests(SimpleTestCase):
    """The test databases themselves: a worker may have just left them."""

    def config(self, failures: int) -> tuple[list, list[tuple]]:
        calls: list[tuple] = []

        def destroy_test_db(*args: Any) -> None:
            calls.append(args)
            if len(calls) <= failures:
                raise RuntimeError("database is being accessed by other users")

        connection = mock.Mock()
        connection.creation.destroy_test_db = destroy_test_db
        return [(connection, "shop", True), (mock.Mock(), "mirror", False)], calls

    def test_a_drop_refused_at_first_is_tried_again_quietly(self):
        old_config, calls = self.config(failures=1)
        with mock.patch.object(clones.time, "sleep") as sleep:
            clones.destroy_test_databases(old_config, 1, keepdb=False)
        self.assertEqual(calls, [("shop", 1, False), ("shop", 0, False)])
        sleep.assert_called_once_with(0.5)
        old_config[1][0].creation.destroy_test_db.assert_not_called()

    def test_the_last_refusal_is_raised_once_every_alias_was_tried(self):
        old_config, calls = self.config(failures=3)
        other = mock.Mock()
        old_config.append((other, "other", True))
        with (
            mock.patch.object(clones.time, "sleep"),
            self.assertRaisesMessage(RuntimeError, "being accessed"),
        ):
            clones.destroy_test_databases(old_config, 1, keepdb=True, attempts=3)
        self.assertEqual(len(calls), 3)
        other.creation.destroy_test_db.assert_called_once_with("other", 1, True)


class CloneAndDestroyTests(TransactionTestCase):
    """Against the database the suite runs on (DB_VENDOR)."""

    available_apps = ["concurrent_runner"]

    def test_every_cloned_slot_gets_a_clone_and_every_clone_goes(self):
        connection = connections["default"]
        old_config = [(connection, "unused", True)]
        # Slots of this process's own: on the last slot of this suite's run
        # this database is the run's test database, whose clones 1, 2 ...
        # are the other workers'.
        slots = [os.getpid() * 10 + n for n in (1, 2, 3)]

        def clone_of(slot: int) -> Any:
            clone = connection.copy()
            clone.settings_dict.update(
                connection.creation.get_test_db_clone_settings(str(slot))
            )
            return clone

        self.addCleanup(clones.destroy_clones, old_config, slots, 0, attempts=1)
        clones.Cloning(old_config, len(slots), verbosity=0, cloned=slots).wait()
        for slot in slots:
            clone = clone_of(slot)
            try:
                with clone.cursor() as cursor:
                    cursor.execute("SELECT COUNT(*) FROM django_content_type")
                    self.assertGreater(cursor.fetchone()[0], 0, slot)
            finally:
                clone.close()
        self.assertEqual(clones.destroy_clones(old_config, slots, 0), [])
        for slot in slots:
            clone = clone_of(slot)
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
        uid = sqlite.tune_sqlite("/nonexistent/run")
        self.addCleanup(connection_created.disconnect, dispatch_uid=uid)
        sqlite.tune_sqlite("/nonexistent/run")  # as a forked worker does
        self.assertEqual(len(connection_created.receivers), before + 1)

    def test_only_files_in_the_run_directory(self):
        def conn(name: str, vendor: str = "sqlite") -> mock.Mock:
            return mock.Mock(vendor=vendor, settings_dict={"NAME": name})

        self.assertTrue(sqlite._is_run_file(conn("/run/x.sqlite3"), "/run"))
        self.assertFalse(sqlite._is_run_file(conn("/run2/x.sqlite3"), "/run"))
        self.assertFalse(sqlite._is_run_file(conn("/run/x", "postgresql"), "/run"))
        self.assertFalse(sqlite._is_run_file(conn("/run/x.sqlite3"), ""))


class TunePostgresqlTests(SimpleTestCase):
    databases = {"default"}  # connections of its own, nothing to flush

    def setUp(self):
        # Each test tunes in a registry of its own; the runner running this
        # suite may have tuned this process, so its receiver comes back.
        from django.db.backends.signals import connection_created

        registry = mock.patch.object(postgresql, "_TUNED_POSTGRESQL", {})
        registry.start()
        self.addCleanup(registry.stop)
        if self.receiver_connected():
            self.addCleanup(
                connection_created.connect,
                postgresql._tune_postgresql_connection,
                weak=False,
                dispatch_uid=postgresql._POSTGRESQL_UID,
            )

    def receiver_connected(self) -> bool:
        from django.db.backends.signals import connection_created

        return any(
            key[0] == postgresql._POSTGRESQL_UID
            for key, *_ in connection_created.receivers
        )

    def test_the_test_databases_and_their_clones_only(self):
        postgresql.tune_postgresql(["test_shop"])
        for name in ("test_shop", "test_shop_1", "test_shop_12"):
            self.assertTrue(postgresql._is_tuned_postgresql(name), name)
        for name in ("shop", "test_shop_x", "test_shopping", "test_shop_", ""):
            self.assertFalse(postgresql._is_tuned_postgresql(name), name)

    def test_tunings_nest_and_each_undoes_only_its_own(self):
        outer = postgresql.tune_postgresql(["test_a"])
        inner = postgresql.tune_postgresql(["test_b"])  # a run inside the run
        self.assertTrue(postgresql._is_tuned_postgresql("test_b_1"))
        postgresql.untune_postgresql(inner)
        postgresql.untune_postgresql(inner)  # twice: nothing more
        self.assertFalse(postgresql._is_tuned_postgresql("test_b"))
        self.assertTrue(postgresql._is_tuned_postgresql("test_a_2"))
        self.assertTrue(self.receiver_connected())
        postgresql.untune_postgresql(outer)
        postgresql.untune_postgresql(None)
        self.assertFalse(postgresql._is_tuned_postgresql("test_a"))
        self.assertFalse(self.receiver_connected())

    def test_a_server_without_the_setting_gets_a_warning_not_an_error(self):
        class Error(Exception):
            pass

        cursor = mock.MagicMock()
        cursor.__enter__.return_value.execute.side_effect = Error("unknown setting")
        connection = mock.Mock(
            vendor="postgresql",
            settings_dict={"NAME": "test_a_1"},
            Database=mock.Mock(Error=Error),
        )
        connection.connection.cursor.return_value = cursor
        connection.get_autocommit.return_value = False
        postgresql.tune_postgresql(["test_a"])
        with self.assertWarnsRegex(RuntimeWarning, "unknown setting"):
            postgresql._tune_postgresql_connection(None, connection)
        connection.connection.rollback.assert_called_once_with()
        connection.connection.commit.assert_not_called()

    def test_a_connection_to_a_tuned_database_commits_without_fsync(self):
        connection = connections["default"]
        if connection.vendor != "postgresql":
            self.skipTest("PostgreSQL's synchronous_commit")
        test_name = connection.settings_dict["NAME"]

        def synchronous_commit(name: str) -> tuple[str, str]:
            copy = connection.copy()
            copy.settings_dict["NAME"] = name
            try:
                with copy.cursor() as cursor:
                    cursor.execute(
                        "SELECT current_setting('synchronous_commit'), reset_val "
                        "FROM pg_settings WHERE name = 'synchronous_commit'"
                    )
                    return cursor.fetchone()
            finally:
                copy.close()

        current, default = synchronous_commit("postgres")
        if default == "off":
            self.skipTest("the server has synchronous_commit off already")
        self.assertEqual(current, default)  # not a test database: untouched
        token = postgresql.tune_postgresql([test_name])
        self.assertEqual(synchronous_commit(test_name)[0], "off")
        postgresql.untune_postgresql(token)
        self.assertEqual(synchronous_commit(test_name)[0], default)


def runner_in_a_run(**options: Any) -> Any:
    """A Runner as it is inside run_tests(), with nothing of the run made."""
    from concurrent_runner.parallel.interrupts import Interrupts
    from concurrent_runner.runner import Runner, _RunState

    runner = Runner(verbosity=0, **options)
    runner._run = _RunState(Path(tempfile.gettempdir()), Interrupts())
    return runner


class RunnerTuningTests(SimpleTestCase):
    def test_teardown_undoes_the_runs_tuning(self):
        from concurrent_runner.runner import Runner

        runner = runner_in_a_run()
        with (
            mock.patch.object(postgresql, "_TUNED_POSTGRESQL", {}) as registry,
            mock.patch.object(Runner, "_destroy_databases", side_effect=OSError),
            mock.patch(
                "django.db.backends.signals.connection_created.disconnect"
            ) as disconnect,
            self.assertRaises(OSError),  # undone even when teardown fails
        ):
            runner._run.pg_tuning = postgresql.tune_postgresql(["test_a"])
            self.assertTrue(registry)
            runner.teardown_databases([])
        self.assertEqual(registry, {})
        self.assertIsNone(runner._run.pg_tuning)
        disconnect.assert_called_once_with(dispatch_uid=postgresql._POSTGRESQL_UID)


class InterruptedSetupTests(SimpleTestCase):
    def test_a_suite_using_no_database_has_none_to_drop(self):
        # An interrupted parallel setup drops what it planned: with no
        # database in use that is nothing, not every alias's test database.
        runner = runner_in_a_run(parallel_groups=2)
        session = runner._run.session = mock.Mock(tests=[])
        session.setup_databases.side_effect = lambda make, checks, **kw: make()
        with (
            mock.patch(
                "concurrent_runner.runner._setup_databases",
                side_effect=KeyboardInterrupt,
            ),
            mock.patch.object(interrupted_setup, "drop_planned") as drop,
            mock.patch.object(postgresql, "tune_postgresql") as tune,
            self.assertRaises(KeyboardInterrupt),
        ):
            runner.setup_databases(aliases=set(), serialized_aliases=set())
        drop.assert_called_once_with({}, made=set(), keepdb=False)
        tune.assert_called_once()
        self.assertEqual(list(tune.call_args.args[0]), [])


class _Creation:
    """Django's creation steps, as the test asks them to go."""

    name = "test_db"

    def __init__(self, execute: BaseException | None, prompt: BaseException | None):
        self.execute, self.prompt = execute, prompt

    def _get_test_db_name(self) -> str:
        return self.name

    def _execute_create_test_db(self, *args: Any) -> None:
        if self.execute is not None:
            raise self.execute

    def _create_test_db(self, *args: Any) -> str:
        try:
            self._execute_create_test_db()
        except Exception:  # already there: Django asks
            if self.prompt is not None:
                raise self.prompt from None
        return self.name


def _connection(creation: Any) -> Any:
    return mock.Mock(creation=creation, settings_dict={"TEST": {}})


class NotingMadeTests(SimpleTestCase):
    def made(self, creation: _Creation) -> set[str]:
        with (
            mock.patch.object(
                interrupted_setup, "connections", {"a": _connection(creation)}
            ),
            contextlib.suppress(BaseException),
            interrupted_setup.noting_made(["a"]) as made,
        ):
            creation._create_test_db(1, False)
        self.assertNotIn("_create_test_db", vars(creation))  # restored
        self.assertNotIn("_execute_create_test_db", vars(creation))
        return made

    def test_a_database_created_or_recreated_is_made(self):
        self.assertEqual(self.made(_Creation(None, None)), {"test_db"})
        # "yes" at the prompt: Django drops it and creates it again.
        self.assertEqual(self.made(_Creation(ValueError("exists"), None)), {"test_db"})

    def test_one_the_user_keeps_at_the_prompt_is_not(self):
        exists = ValueError("exists")
        for answer in (SystemExit(1), KeyboardInterrupt(), EOFError()):
            with self.subTest(answer=answer):
                self.assertEqual(self.made(_Creation(exists, answer)), set())

    def test_one_interrupted_while_being_created_is(self):
        self.assertEqual(self.made(_Creation(KeyboardInterrupt(), None)), {"test_db"})

    def test_one_whose_create_failed_otherwise_is_not(self):
        # Django exits when CREATE fails for another reason than "already
        # exists" (PostgreSQL says "permission denied" first, even then).
        self.assertEqual(self.made(_Creation(SystemExit(2), None)), set())

    def test_a_database_two_aliases_share_is_noted_by_either(self):
        # Django may make it through another alias than the one planned.
        first, second = _Creation(None, None), _Creation(None, None)
        conns = {"replica": _connection(first), "default": _connection(second)}
        with (
            mock.patch.object(interrupted_setup, "connections", conns),
            interrupted_setup.noting_made(["replica", "default"]) as made,
        ):
            second._create_test_db(1, False)
        self.assertEqual(made, {"test_db"})

    def test_mirrors_are_not_watched_and_patches_already_there_come_back(self):
        standin = mock.Mock(name="file_backed_sqlite's _create_test_db")
        creation = _Creation(None, None)
        creation._create_test_db = standin  # type: ignore[method-assign]
        mirror = _Creation(None, None)
        conns = {
            "a": _connection(creation),
            "m": mock.Mock(creation=mirror, settings_dict={"TEST": {"MIRROR": "a"}}),
        }
        with (
            mock.patch.object(interrupted_setup, "connections", conns),
            interrupted_setup.noting_made(["a", "m"]) as made,
        ):
            creation._create_test_db(1, False)
            self.assertEqual(vars(mirror), {"execute": None, "prompt": None})
        standin.assert_called_once_with(1, False)
        self.assertIs(vars(creation)["_create_test_db"], standin)
        self.assertEqual(made, {"test_db"})

    def test_only_the_made_ones_are_dropped(self):
        conns = {
            alias: mock.Mock(vendor="postgresql", settings_dict={"NAME": "x"})
            for alias in ("default", "other")
        }
        planned = {"default": ("test_db", "db"), "other": ("test_other", "other")}
        settings = mock.Mock(DATABASES={a: {"NAME": "x"} for a in conns})
        with (
            mock.patch.object(interrupted_setup, "connections", conns),
            mock.patch("django.conf.settings", settings),
        ):
            interrupted_setup.drop_planned(planned, made={"test_other"}, keepdb=False)
        conns["default"].creation._destroy_test_db.assert_not_called()
        conns["other"].creation._destroy_test_db.assert_called_once_with(
            "test_other", verbosity=0
        )
        self.assertEqual(conns["default"].settings_dict["NAME"], "db")
        self.assertEqual(conns["other"].settings_dict["NAME"], "other")
        self.assertEqual(settings.DATABASES["default"]["NAME"], "db")
