"""One database per worker slot: clones of the test databases, made and dropped.

The parent creates the test databases once (migrations once) with Django's
own ``setup_databases``, then gives every slot but the last its clone
through the backend's ``clone_test_db`` (SQLite file copy, PostgreSQL
template, MySQL/MariaDB dump); the last slot works on the test databases
themselves (``clone_slots``). Without ``--keepdb`` clones are made fresh
and destroyed; with it, every slot gets a clone, kept for the next run and
used again only while it matches the test database (``kept``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Container, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import connections

DROP_ATTEMPTS = 5


#: Clones made or dropped at once: each holds a server connection (or a
#: mysqldump pipeline), and PostgreSQL allows 100 connections by default.
MAX_THREADS = 8


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


def clear_old_clones(
    old_config: list[tuple[Any, str, bool]],
    slots: Iterable[int],
    *,
    interactive: bool,
    verbosity: int,
    ours: Container[str] = (),
) -> None:
    """Deal, before any clone is made, with databases already named like
    the clones of ``slots``, as Django deals with its own test database:
    ask whether to drop each (``interactive``), or drop it saying
    "Destroying old test database" (``--noinput``). Any answer but "yes"
    cancels the run, with Django's words and exit code.

    The clones themselves are made in threads, which cannot ask, and
    Django's ``clone_test_db`` drops such a database without a word; so
    this runs in the main thread first. A clone kept by an earlier
    ``--keepdb`` run that no longer matches is in ``ours``: it is made again
    without a question.
    """
    for connection, _old_name, created in old_config:
        if not created:
            continue  # a mirror: it has no clones of its own
        creation = connection.creation
        for slot in slots:
            name = creation.get_test_db_clone_settings(str(slot))["NAME"]
            if name in ours or not database_exists(connection, name):
                continue
            creation.log(
                f"Got an error creating clone {slot} of the test database for "
                f"alias {connection.alias!r}: a database named {name!r} already "
                f"exists."
            )
            if interactive:
                confirm = input(
                    f"Type 'yes' if you would like to try deleting the test "
                    f"database '{name}', or 'no' to cancel: "
                )
                if confirm != "yes":
                    creation.log("Tests cancelled.")
                    # As Django's own _create_test_db, on the same answer.
                    raise SystemExit(1)
            if verbosity >= 1:
                shown = creation._get_database_display_str(verbosity, name)
                creation.log(f"Destroying old test database for alias {shown}...")
            creation._destroy_test_db(name, verbosity)


def database_exists(connection: Any, name: str) -> bool:
    """Whether the database (SQLite: the file) ``name`` exists on the
    server of ``connection``. False for a backend this cannot ask (its own
    ``clone_test_db`` then decides, as before)."""
    if connection.vendor == "sqlite":
        return not connection.creation.is_in_memory_db(name) and os.path.exists(name)
    queries = {
        "postgresql": "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s",
        "mysql": "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
    }
    query = queries.get(connection.vendor)
    if query is None:
        return False
    with connection._nodb_cursor() as cursor:
        cursor.execute(query, [name])
        return cursor.fetchone() is not None


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
        *,
        kept: Sequence[int] = (),
        after_clone: Callable[[str, int], None] | None = None,
    ) -> None:
        connections.close_all()  # PostgreSQL copies no template in use
        aliases = primaries(old_config)
        cloned = list(range(1, slots + 1) if cloned is None else cloned)
        #: The slots this run makes clones for, and those it uses kept ones.
        self.cloned, self.kept = cloned, list(kept)
        self._after_clone = after_clone
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
        #: Slots announced once every clone is made: the one that works on
        #: the test databases themselves (not ``kept`` clones: they are ready).
        self._last = [
            slot
            for slot in range(1, slots + 1)
            if not aliases or (slot not in self._left and slot not in kept)
        ]
        self._lock = threading.Lock()
        self._first = cloned[0] if aliases and cloned else None
        self._later = [(alias, slot) for slot in cloned[1:] for alias in aliases]
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(self._jobs_left, MAX_THREADS)),
            thread_name_prefix="databases",
        )
        self._futures: list[Future[None]] = []
        if on_slot is not None and aliases:
            for slot in kept:
                on_slot(slot)
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
        if self._after_clone is not None:
            self._after_clone(alias, slot)
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
    from .kept import forget_record

    forget_record(alias, slot)
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
