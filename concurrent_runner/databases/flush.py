"""A cheaper ``TransactionTestCase`` flush on PostgreSQL: DELETE, not TRUNCATE.

After every ``TransactionTestCase`` test Django empties every table with one
``TRUNCATE``. On PostgreSQL that gives each table, index and TOAST table a
new file, and the commit syncs them: 50-75 ms per test on this project's CI
machine for Django's own nine tables, against 4 ms to DELETE their few rows.
Django's MySQL backend already flushes with DELETE, for the same reason.

With ``settings.CONCURRENT_RUNNER_FAST_FLUSH`` (on unless set False) the
runner's test processes flush with DELETE where that empties the same
tables with the same effect, in one server-side block:

- foreign keys are checked once all tables are empty (Django makes them
  deferrable), so the order of the tables does not matter;
- a table with a trigger of its own (an audit or history trigger would
  fire on DELETE, not on TRUNCATE), or a foreign key that cannot be
  deferred or is left violated (a row of a table Django does not flush
  pointing into one it does), gets Django's TRUNCATE instead, with its
  error where TRUNCATE fails too;
- a flush that resets sequences (``reset_sequences = True``) or cascades
  (``available_apps``) is Django's TRUNCATE, untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# On the class: every PostgreSQL connection of this process, also those made
# later (threads, a worker's own).
_PATCHED = "_concurrent_runner_fast_flush"


def fast_flush_enabled() -> bool:
    """``settings.CONCURRENT_RUNNER_FAST_FLUSH``, on unless set False."""
    from ..conf import fast_flush

    return fast_flush()


def wanted() -> bool:
    """Whether this process should flush with DELETE: the setting is on and
    a database is PostgreSQL (checked first, as the patch imports psycopg,
    which costs a run on other databases 10-25 ms for nothing)."""
    from django.db import connections

    return fast_flush_enabled() and any(
        connections[alias].vendor == "postgresql" for alias in connections
    )


def delete_flush_sql(quoted: Sequence[str], truncate: str) -> str:
    """One PL/pgSQL block emptying ``quoted`` tables with DELETE, or with
    the ``truncate`` statement where DELETE could differ from it."""
    names = ", ".join(f"'{name.replace(chr(39), chr(39) * 2)}'" for name in quoted)
    deletes = "\n".join(f"  DELETE FROM {name};" for name in quoted)
    return f"""DO $flush$
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_trigger
    WHERE NOT tgisinternal AND tgrelid = ANY (ARRAY[{names}]::regclass[])
  ) THEN
    {truncate}
    RETURN;
  END IF;
  BEGIN
    SET CONSTRAINTS ALL DEFERRED;
{deletes}
    SET CONSTRAINTS ALL IMMEDIATE;
  EXCEPTION WHEN integrity_constraint_violation THEN
    {truncate}
  END;
END
$flush$;"""


def install() -> bool:
    """Make PostgreSQL flushes in this process use ``delete_flush_sql``;
    False if they already do or the backend cannot be imported."""
    try:
        from django.db.backends.postgresql.operations import DatabaseOperations
    except ImportError:  # no psycopg: no PostgreSQL to flush
        return False
    if getattr(DatabaseOperations, _PATCHED, False):
        return False
    original = DatabaseOperations.sql_flush

    def sql_flush(
        self: Any,
        style: Any,
        tables: Sequence[str],
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        statements = original(
            self,
            style,
            tables,
            reset_sequences=reset_sequences,
            allow_cascade=allow_cascade,
        )
        if reset_sequences or allow_cascade or len(statements) != 1:
            return statements
        truncate = statements[0]
        return [delete_flush_sql([self.quote_name(t) for t in tables], truncate)]

    sql_flush.original = original  # type: ignore[attr-defined]
    DatabaseOperations.sql_flush = sql_flush  # type: ignore[method-assign]
    setattr(DatabaseOperations, _PATCHED, True)
    return True


def uninstall() -> None:
    try:
        from django.db.backends.postgresql.operations import DatabaseOperations
    except ImportError:
        return
    if getattr(DatabaseOperations, _PATCHED, False):
        DatabaseOperations.sql_flush = DatabaseOperations.sql_flush.original  # type: ignore[attr-defined,method-assign]
        delattr(DatabaseOperations, _PATCHED)


@contextmanager
def fast_flush() -> Iterator[None]:
    """``install()`` for the block, where ``wanted()``."""
    installed = wanted() and install()
    try:
        yield
    finally:
        if installed:
            uninstall()
