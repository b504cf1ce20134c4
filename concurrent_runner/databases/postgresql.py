"""PostgreSQL test databases commit without waiting for fsync.

See ``tune_postgresql``; the cheaper flush is in ``flush``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from typing import Any

from django.db import connections

from .interrupted_setup import planned_test_databases


def fast_postgresql_enabled() -> bool:
    """``settings.CONCURRENT_RUNNER_FAST_POSTGRESQL``, on unless set False."""
    from ..conf import fast_postgresql

    return fast_postgresql()


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
