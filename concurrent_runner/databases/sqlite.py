"""SQLite test databases that several processes can open, tuned for being thrown away.

An in-memory test database becomes a file in the run's directory
(``file_backed_sqlite``), whose connections ignore ``close()`` as an
in-memory one does (``keep_open_like_memory``); connections to the run's
files skip fsync and journal deletion (``tune_sqlite``).
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.db import connections


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


def fast_sqlite_enabled() -> bool:
    """``settings.CONCURRENT_RUNNER_FAST_SQLITE``, on unless set False."""
    from ..conf import fast_sqlite

    return fast_sqlite()


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
