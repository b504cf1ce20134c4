"""Which test databases a setup made, so that an interrupted one drops only those."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connections


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
