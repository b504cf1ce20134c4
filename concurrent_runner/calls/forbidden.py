"""The databases a concurrent call may not use: those its calling test may
not use.

Django makes a test's disallowed aliases fail for the whole class
(``SimpleTestCase._add_databases_failures``): their ``connect``,
``cursor`` and the like become ``_DatabaseFailure`` objects that raise
``DatabaseOperationForbidden``, and ``ensure_connection`` is patched to
fail for them too. The caller reads those failures (``forbidden_here``)
and sends them with the batch; each call process installs the same
(``forbid``) before it does anything, so that a call fails exactly where
and as its test would, and can never reach a database the run made no test
database for (whose settings still name the real one).

Imported by both sides; nothing from the rest of the runner.
"""

from __future__ import annotations

from typing import Any

#: What Django's test classes patch ensure_connection with (its name).
_PATCHED_ENSURE = "patched_ensure_connection"


def _failure_class() -> Any:
    from django.test.testcases import _DatabaseFailure

    return _DatabaseFailure


def forbidden_here() -> dict[str, dict[str, str]]:
    """For each alias the current test may not use: the failing methods of
    its connection, with Django's message for each."""
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    failure = _failure_class()
    patched = getattr(BaseDatabaseWrapper.ensure_connection, "__name__", "")
    forbidden: dict[str, dict[str, str]] = {}
    for alias in connections:
        connection = connections[alias]
        methods = {
            name: value.message
            for name, value in vars(connection).items()
            if isinstance(value, failure)
        }
        if not methods:
            continue
        connect = methods.get("connect")
        if (
            patched == _PATCHED_ENSURE
            and connect
            and "ensure_connection" not in methods
        ):
            # The patch fails an unconnected disallowed alias with the same
            # message for "threaded connections" (Django's wording).
            methods["ensure_connection"] = connect.replace(
                "Database connections to", "Database threaded connections to", 1
            )
        forbidden[alias] = methods
    return forbidden


def forbid(forbidden: dict[str, dict[str, str]]) -> None:
    """In a call process: make the caller's forbidden aliases fail here as
    they fail in its test."""
    from django.db import connections

    failure = _failure_class()
    for alias, methods in forbidden.items():
        if alias not in connections:
            continue  # an alias the caller made at run time; nothing to reach
        connection = connections[alias]
        for name, message in methods.items():
            setattr(connection, name, failure(getattr(connection, name), message))
