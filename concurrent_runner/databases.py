"""Test databases for a parallel run: one of its own per worker slot.

The parent creates the test databases once (migrations once) with Django's
own ``setup_databases``, then gives every slot but the last its clone
through the backend's ``clone_test_db`` (SQLite file copy, PostgreSQL
template, MySQL/MariaDB dump); the last slot works on the test databases
themselves (``clone_slots``). Clones are always made fresh and always
destroyed, also under ``--keepdb``, so no stale clone outlives a run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.db import connections

DROP_ATTEMPTS = 5
#: Clones made or dropped at once: each holds a server connection (or a
#: mysqldump pipeline), and PostgreSQL allows 100 connections by default.
MAX_THREADS = 8


def _is_in_memory_sqlite(alias: str) -> bool:
    connection = connections[alias]
    if connection.vendor != "sqlite":
        return False
    name = connection.settings_dict.get("TEST", {}).get("NAME")
    return connection.creation.is_in_memory_db(name or ":memory:")  # type: ignore[attr-defined]


@contextlib.contextmanager
def file_backed_sqlite(directory: Path) -> Iterator[None]:
    """Give in-memory SQLite test databases a file in ``directory``.

    Other processes (workers, concurrent calls) cannot see an in-memory
    database; a file they can. The user's TEST settings are restored after.
    """
    changed: dict[str, Any] = {}
    for alias in connections:
        if _is_in_memory_sqlite(alias):
            test = connections[alias].settings_dict.setdefault("TEST", {})
            changed[alias] = test.get("NAME")
            test["NAME"] = str(directory / f"test_{alias}.sqlite3")
            creation = connections[alias].creation
            creation._create_test_db = _without_old_database_message(  # type: ignore[attr-defined]
                creation._create_test_db  # type: ignore[attr-defined]
            )
    try:
        yield
    finally:
        for alias, name in changed.items():
            connections[alias].settings_dict["TEST"]["NAME"] = name
            vars(connections[alias].creation).pop("_create_test_db", None)


def _without_old_database_message(create: Callable[..., Any]) -> Callable[..., Any]:
    """SQLite's ``_create_test_db``, without its "Destroying old test
    database" line: Django prints it before every file-backed test database
    is made, and the file standing in for an in-memory one is always new
    (the run's directory is), so there is never an old one to destroy."""

    def create_test_db(verbosity: int, autoclobber: bool, keepdb: bool = False) -> Any:
        return create(0, autoclobber, keepdb)  # verbosity only chooses that line

    return create_test_db


def keep_open_like_memory(directory: str | Path) -> list[Any]:
    """Make the SQLite connections to files in ``directory`` ignore
    ``close()``, as Django's connection to an in-memory database does.

    Those files stand in for in-memory test databases (``file_backed_sqlite``
    and their clones). Django never closes an in-memory test database, so
    its connection, with its temporary tables and settings, lives from test
    to test; a file would instead be closed and reopened after every
    ``TransactionTestCase`` test, which also costs milliseconds each time.
    Returns the connections changed, for ``really_close``.
    """
    changed = []
    for alias in connections:
        connection = connections[alias]
        if _is_run_file(connection, directory):
            connection.close = types.MethodType(_ignore_close, connection)  # type: ignore[method-assign]
            changed.append(connection)
    return changed


def _is_run_file(connection: Any, directory: str | Path) -> bool:
    """Whether ``connection`` is to an SQLite file in the run's ``directory``."""
    if not str(directory):
        return False
    prefix = os.path.join(str(directory), "")
    name = str(connection.settings_dict.get("NAME") or "")
    return connection.vendor == "sqlite" and name.startswith(prefix)


def _ignore_close(connection: Any) -> None:
    connection.validate_thread_sharing()


def really_close(changed: list[Any]) -> None:
    """Undo ``keep_open_like_memory`` and close for real."""
    for connection in changed:
        vars(connection).pop("close", None)
        connection.close()


def primaries(old_config: list[tuple[Any, str, bool]]) -> list[str]:
    """Aliases whose test database this run created (not mirrors)."""
    return [conn.alias for conn, _name, destroy in old_config if destroy]


def clone_slots(slots: int, keepdb: bool) -> list[int]:
    """The worker slots that get clones of the test databases.

    All but the last: the last slot's worker works on the test databases
    themselves, which nothing else uses once the clones are made, so a run
    makes one clone fewer (on PostgreSQL each is a ``CREATE DATABASE`` that
    waits for the disk). With ``--keepdb`` every slot gets a clone: the
    test databases are kept for the next run, untouched by the tests.
    """
    return list(range(1, slots + 1 if keepdb else slots))


def slot_settings(
    old_config: list[tuple[Any, str, bool]], slot: int, *, cloned: bool = True
) -> dict:
    """What a worker on ``slot`` points each alias at: its clone (or, not
    ``cloned``, the test database itself) or a mirror's primary.

    A pure function of the parent's connections, like Django's
    ``get_test_db_clone_settings``: it returns new dicts and changes nothing.
    """
    created = primaries(old_config)
    targets: dict[str, dict[str, Any] | str] = {}
    for alias in created:
        connection = connections[alias]
        targets[alias] = (
            connection.creation.get_test_db_clone_settings(str(slot))
            if cloned
            else {**connection.settings_dict}
        )
    # Mirrors (TEST MIRROR, or a second alias of the same database) were
    # given their primary's test NAME by setup_databases.
    test_names = {connections[alias].settings_dict["NAME"]: alias for alias in created}
    for alias in connections:
        name = connections[alias].settings_dict["NAME"]
        if alias not in targets and name in test_names:
            targets[alias] = test_names[name]
    return targets


class Cloning:
    """Clones of every created database for the ``cloned`` slots (see
    ``clone_slots``), made in the background.

    The first slot's clones come first, on their own, so that one worker
    (the one given the longest unit) starts testing early; then the other
    slots' clones are made at the same time, each by a copy of the alias's
    connection in a thread of its own: a server copies one template into
    several databases about as fast as into one (PostgreSQL), or runs the
    dumps side by side (MySQL/MariaDB), but then all finish together.
    ``on_slot(slot)`` is called, in a clone's thread, as soon as every alias
    of that slot has its clone; a slot without clones, once every clone is
    made (PostgreSQL copies no template in use).
    """

    def __init__(
        self,
        old_config: list,
        slots: int,
        verbosity: int,
        on_slot: Callable[[int], None] | None = None,
        cloned: Sequence[int] | None = None,
    ) -> None:
        connections.close_all()  # PostgreSQL copies no template in use
        aliases = primaries(old_config)
        cloned = list(range(1, slots + 1) if cloned is None else cloned)
        for alias in aliases:
            for _ in cloned:
                # Django's "Cloning test database..." now, from this thread:
                # from the clones' threads it would land among the results.
                _log_cloning(alias, verbosity)
        self._on_slot = on_slot
        self._started = time.monotonic()
        #: Seconds from the start to the last clone made; None until then.
        self.took: float | None = None
        self._jobs_left = len(aliases) * len(cloned)
        self._left = {slot: len(aliases) for slot in cloned}
        #: Slots announced once every clone is made.
        self._last = [
            slot
            for slot in range(1, slots + 1)
            if not aliases or slot not in self._left
        ]
        self._lock = threading.Lock()
        self._first = cloned[0] if aliases and cloned else None
        self._later = [(alias, slot) for slot in cloned[1:] for alias in aliases]
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(self._jobs_left, MAX_THREADS)),
            thread_name_prefix="databases",
        )
        self._futures: list[Future[None]] = []
        first = self._first
        if first is None:  # nothing to clone
            self._all_made()
            return
        for alias in aliases:
            # Under the lock: the first slot's job may end, and add the
            # others, before this loop does.
            future = self._pool.submit(self._clone, alias, first)
            with self._lock:
                self._futures.append(future)

    def _clone(self, alias: str, slot: int) -> None:
        _clone(alias, slot, verbosity=0)
        with self._lock:
            self._left[slot] -= 1
            complete = self._left[slot] == 0
            self._jobs_left -= 1
            last = self._jobs_left == 0
        # The first slot is announced before the other slots' clones start:
        # else one of them, made and announced first, could beat it.
        if complete and self._on_slot is not None:
            self._on_slot(slot)
        if last:
            self._all_made()
        if complete and slot == self._first:
            # Before this job's future is done, so wait() sees them.
            later = [self._pool.submit(self._clone, *job) for job in self._later]
            with self._lock:
                self._futures += later

    def _all_made(self) -> None:
        self.took = time.monotonic() - self._started
        if self._on_slot is not None:
            for slot in self._last:
                self._on_slot(slot)

    @property
    def done(self) -> bool:
        return all(future.done() for future in self._futures)

    def failure(self) -> BaseException | None:
        """The first clone that failed so far, if any."""
        for future in self._futures:
            if future.done() and not future.cancelled() and future.exception():
                return future.exception()
        return None

    def wait(self) -> None:
        """Return once every clone is made; raise the first failure once
        every clone that started has ended (clones not started are dropped)."""
        try:
            i = 0
            while i < len(self._futures):  # slot 1's job adds the others
                self._futures[i].result()
                i += 1
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _log_cloning(alias: str, verbosity: int) -> None:
    if verbosity < 1:
        return
    creation = connections[alias].creation
    name = creation.connection.settings_dict["NAME"]
    shown = creation._get_database_display_str(verbosity, name)  # type: ignore[attr-defined]
    creation.log(f"Cloning test database for alias {shown}...")


def _clone(alias: str, slot: int, verbosity: int) -> None:
    copy = connections[alias].copy()
    try:
        copy.creation.clone_test_db(suffix=str(slot), verbosity=verbosity, keepdb=False)
    finally:
        copy.close()


def _in_threads(function: Callable[..., Any], jobs: list[tuple]) -> list[Any]:
    """``function(*job)`` for every job, in threads; results in order.

    The first exception is raised once every job that started has ended, and
    jobs not started yet are dropped (an interrupt leaves nothing half made
    behind our back).
    """
    if not jobs:
        return []
    pool = ThreadPoolExecutor(
        max_workers=min(len(jobs), MAX_THREADS), thread_name_prefix="databases"
    )
    try:
        futures = [pool.submit(function, *job) for job in jobs]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def destroy_clones(
    old_config: list,
    slots: Iterable[int],
    verbosity: int,
    attempts: int = DROP_ATTEMPTS,
) -> list[str]:
    """Destroy the clones of ``slots``, at the same time, each drop retried
    briefly; try them all, and return what could not go."""
    jobs = [
        (alias, slot, verbosity, attempts)
        for alias in primaries(old_config)
        for slot in slots
    ]
    return [problem for problem in _in_threads(_destroy, jobs) if problem]


def _destroy(alias: str, slot: int, verbosity: int, attempts: int) -> str | None:
    copy = connections[alias].copy()
    try:
        _retried(
            lambda first: copy.creation.destroy_test_db(
                suffix=str(slot), verbosity=verbosity if first else 0, keepdb=False
            ),
            attempts,
        )
    except Exception as exc:
        return f"clone {slot} of {alias!r}: {exc}"
    finally:
        copy.close()
    return None


def destroy_test_databases(
    old_config: list, verbosity: int, keepdb: bool, attempts: int = DROP_ATTEMPTS
) -> None:
    """Django's ``teardown_databases`` without clones, each drop retried as
    a clone's is (the last slot's worker worked on these databases); every
    alias is tried, then the first failure is raised."""
    failures = []
    for connection, old_name, destroy in old_config:
        if destroy:
            try:
                _destroy_test_database(
                    connection, old_name, verbosity, keepdb, attempts
                )
            except Exception as exc:
                failures.append(exc)
    if failures:
        raise failures[0]


def _destroy_test_database(
    connection: Any, old_name: str, verbosity: int, keepdb: bool, attempts: int
) -> None:
    _retried(
        lambda first: connection.creation.destroy_test_db(
            old_name, verbosity if first else 0, keepdb
        ),
        attempts,
    )


def _retried(drop: Callable[[bool], None], attempts: int) -> None:
    """``drop(first_attempt)``, tried ``attempts`` times half a second apart;
    the last failure is raised. A server may take a moment to notice that a
    killed worker's connection is gone (PostgreSQL refuses to drop a
    database still in use)."""
    for attempt in range(attempts):
        try:
            drop(attempt == 0)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def planned_test_databases(aliases: Any) -> dict[str, tuple[str, Any]]:
    """alias -> (test database name, original NAME), before anything exists.

    Computed up front because Django switches an alias to its test NAME only
    after CREATE DATABASE returns: an interrupt in between must still find
    the database to drop.
    """
    planned: dict[str, tuple[str, Any]] = {}
    for alias, name in _test_database_names(aliases):
        if name not in {n for n, _ in planned.values()}:
            planned[alias] = (name, connections[alias].settings_dict["NAME"])
    return planned


def _test_database_names(aliases: Any) -> Iterator[tuple[str, str]]:
    """(alias, its test database's name) for each alias that is no mirror."""
    for alias in aliases:
        connection = connections[alias]
        if not connection.settings_dict.get("TEST", {}).get("MIRROR"):
            yield alias, connection.creation._get_test_db_name()  # type: ignore[attr-defined]


@contextlib.contextmanager
def noting_made(aliases: Any) -> Iterator[set[str]]:
    """The names of the test databases that this setup makes.

    Django makes a test database in ``creation._create_test_db``. If one is
    there already, it asks whether to destroy it; "no", or Ctrl-C at that
    prompt, leaves it alone, and so must an interrupted setup. A name counts
    as made once ``_create_test_db`` returns, or once its ``CREATE
    DATABASE`` (``_execute_create_test_db``) returns or is interrupted by
    Ctrl-C. Every alias is watched, since Django may make a database that
    two aliases share through either of them.
    """
    made: set[str] = set()
    patched: list[tuple[Any, str, Any]] = []

    def watch(creation: Any, method: str, name: str, interrupted: bool) -> None:
        original = getattr(creation, method, None)
        if original is None:
            return

        def noted(*args: Any, **kwargs: Any) -> Any:
            # Any other exception ("already exists", Django's sys.exit
            # after a failed CREATE) means the database is not this run's.
            try:
                result = original(*args, **kwargs)
            except KeyboardInterrupt:
                if interrupted:
                    made.add(name)
                raise
            made.add(name)
            return result

        patched.append((creation, method, vars(creation).get(method)))
        setattr(creation, method, noted)

    for alias, name in _test_database_names(aliases):
        creation = connections[alias].creation
        watch(creation, "_create_test_db", name, interrupted=False)
        watch(creation, "_execute_create_test_db", name, interrupted=True)
    try:
        yield made
    finally:
        for creation, method, before in reversed(patched):
            if before is None:
                vars(creation).pop(method, None)
            else:
                setattr(creation, method, before)


def drop_planned(
    planned: dict[str, tuple[str, Any]], *, made: set[str], keepdb: bool
) -> None:
    """After an interrupted setup: drop the planned test databases that it
    made (names, see noting_made), and restore every planned alias's NAME."""
    from django.conf import settings

    for alias, (test_name, old_name) in planned.items():
        connection = connections[alias]
        connection.close()
        in_memory = (
            connection.vendor == "sqlite"
            and connection.creation.is_in_memory_db(  # type: ignore[attr-defined]
                test_name
            )
        )
        if test_name in made and not keepdb and not in_memory:
            with contextlib.suppress(Exception):  # it may never have been made
                connection.creation._destroy_test_db(test_name, verbosity=0)  # type: ignore[attr-defined]
        connection.settings_dict["NAME"] = old_name
        settings.DATABASES[alias]["NAME"] = old_name


def fast_sqlite_enabled() -> bool:
    """``settings.CONCURRENT_RUNNER_FAST_SQLITE``, on unless set False."""
    from django.conf import settings

    return bool(getattr(settings, "CONCURRENT_RUNNER_FAST_SQLITE", True))


def tune_sqlite(directory: str | Path) -> Any:
    """Tune every SQLite connection made from now on to a file in
    ``directory``, the run's own disposable test databases; returns the
    ``dispatch_uid`` that ``tuned_sqlite`` disconnects with.

    They are deleted when the run ends, so durability across an OS crash
    buys nothing, while every commit (each TransactionTestCase flush) pays
    for an fsync and for creating and deleting a journal file. With
    ``synchronous=OFF`` and ``journal_mode=PERSIST`` it pays for neither;
    both stay safe when a process dies mid-transaction, which a worker that
    crashes must be (its replacement reuses the clone), and neither changes
    how concurrent connections lock. Connecting twice for one directory (a
    forked worker inherits the parent's receiver) connects once.
    """
    from django.db.backends.signals import connection_created

    def receiver(sender: Any, connection: Any, **kwargs: Any) -> None:
        if _is_run_file(connection, directory):
            connection.connection.execute("PRAGMA synchronous=OFF")
            connection.connection.execute("PRAGMA journal_mode=PERSIST")

    uid = ("concurrent_runner.tune_sqlite", str(directory))
    connection_created.connect(receiver, weak=False, dispatch_uid=uid)
    return uid


def fast_postgresql_enabled() -> bool:
    """``settings.CONCURRENT_RUNNER_FAST_POSTGRESQL``, on unless set False."""
    from django.conf import settings

    return bool(getattr(settings, "CONCURRENT_RUNNER_FAST_POSTGRESQL", True))


#: Test database names whose PostgreSQL connections this process tunes,
#: per call of ``tune_postgresql`` (a run inside a run keeps its own).
_TUNED_POSTGRESQL: dict[int, frozenset[str]] = {}
_POSTGRESQL_UID = "concurrent_runner.tune_postgresql"
_tunings = itertools.count(1)


def tune_postgresql(names: Iterable[str]) -> int:
    """Commit without waiting for the WAL to reach the disk
    (``synchronous_commit = off``) on every PostgreSQL connection this
    process makes from now on to a test database in ``names``, or to one of
    their clones (``<name>_<n>``); returns the token ``untune_postgresql``
    takes.

    A commit is as visible to other connections as before, at once; only a
    crash of the server itself could lose the last few, and these databases
    are thrown away. Each ``TransactionTestCase`` test commits several
    times (its flush, then the content types and permissions that
    ``post_migrate`` writes again), so each of those stops waiting for an
    fsync. A forked worker inherits the tuning.
    """
    from django.db.backends.signals import connection_created

    token = next(_tunings)
    _TUNED_POSTGRESQL[token] = frozenset(names)
    connection_created.connect(
        _tune_postgresql_connection, weak=False, dispatch_uid=_POSTGRESQL_UID
    )
    return token


def untune_postgresql(token: int | None) -> None:
    """Undo one ``tune_postgresql``; safe to call twice, or with None."""
    from django.db.backends.signals import connection_created

    if token is not None:
        _TUNED_POSTGRESQL.pop(token, None)
    if not _TUNED_POSTGRESQL:
        connection_created.disconnect(dispatch_uid=_POSTGRESQL_UID)


def postgresql_test_names(aliases: Iterable[str]) -> list[str]:
    """The test database names of the PostgreSQL ones among ``aliases``."""
    postgresql = [
        alias for alias in aliases if connections[alias].vendor == "postgresql"
    ]
    return [name for name, _ in planned_test_databases(postgresql).values()]


def _is_tuned_postgresql(name: str) -> bool:
    base, _, suffix = name.rpartition("_")
    return any(
        name in names or (suffix.isdigit() and base in names)
        for names in _TUNED_POSTGRESQL.values()
    )


def _tune_postgresql_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "postgresql":
        return
    if not _is_tuned_postgresql(str(connection.settings_dict.get("NAME") or "")):
        return
    try:
        with connection.connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
    except connection.Database.Error as exc:
        # A server that speaks PostgreSQL but has no such setting: the
        # tests run as they would without the runner.
        if not connection.get_autocommit():
            connection.connection.rollback()
        warnings.warn(
            f"Could not turn synchronous_commit off ({exc}); set "
            f"CONCURRENT_RUNNER_FAST_POSTGRESQL = False to stop trying.",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    if not connection.get_autocommit():
        connection.connection.commit()  # as Django commits its own SETs


@contextlib.contextmanager
def tuned_sqlite(directory: str | Path) -> Iterator[None]:
    """``tune_sqlite`` for connections made inside the block, unless
    ``settings.CONCURRENT_RUNNER_FAST_SQLITE = False``."""
    from django.db.backends.signals import connection_created

    if not fast_sqlite_enabled():
        yield
        return
    uid = tune_sqlite(directory)
    try:
        yield
    finally:
        connection_created.disconnect(dispatch_uid=uid)
