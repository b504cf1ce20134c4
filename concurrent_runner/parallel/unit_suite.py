"""The child side: how a worker runs one unit, fixtures included.

``UnitSuite`` is unittest's own suite with two additions, both at the points
where unittest moves from one class or module to the next:

- before a class or module fixture runs, it tells the parent which one
  (``setUpClass (app.tests.Cls)``, in unittest's own words), so that a
  worker that dies or hangs there is reported as that fixture's error;
- before a ``TestCase`` class starts on a database that a
  ``TransactionTestCase`` has flushed since, it puts back what the
  migrations left there (Django's serialized contents of the test
  database), as serial Django would have it: serially, every ``TestCase``
  runs before any ``TransactionTestCase``. A worker keeps that order within
  a phase, but an isolated group's phase, or a serial group that mixes both
  kinds, can bring a ``TestCase`` after a flush.

This module imports nothing from the parent side.
"""

from __future__ import annotations

import sys
import unittest
from collections.abc import Callable, Iterable
from typing import Any

from django.test import TestCase, TransactionTestCase


def class_label(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class FlushedDatabases:
    """Which of this slot's databases a ``TransactionTestCase`` has flushed
    since the migrations' contents were last there, and which a worker
    that died left in a state nobody knows (``unknown``: rows a crashed
    ``TransactionTestCase`` committed and never flushed)."""

    def __init__(
        self, flushed: Iterable[str] = (), unknown: Iterable[str] = ()
    ) -> None:
        self.aliases: set[str] = set(flushed) | set(unknown)
        self.unknown: set[str] = set(unknown)

    def class_starts(self, cls: type) -> None:
        if not isinstance(cls, type) or not issubclass(cls, TransactionTestCase):
            return
        aliases = set(cls._databases_names(include_mirrors=False))  # type: ignore[attr-defined]
        if issubclass(cls, TestCase):
            self.restore(aliases & self.aliases)
        else:
            # Serially, the crashed test's own flush would have emptied
            # them: the next TransactionTestCase must not find its rows.
            self.empty(aliases & self.unknown)
            # Pessimistic: its flush comes after its first test.
            self.aliases |= aliases

    def empty(self, aliases: set[str]) -> None:
        """Flush ``aliases`` as a ``TransactionTestCase`` does after a test."""
        for alias in sorted(aliases):
            _flush(alias, inhibit_post_migrate=False)
            self.unknown.discard(alias)

    def restore(self, aliases: set[str]) -> None:
        """Empty ``aliases`` and load what the migrations left in them."""
        from django.db import connections

        for alias in sorted(aliases):
            connection = connections[alias]
            contents = getattr(connection, "_test_serialized_contents", None)
            if contents is None:
                continue  # nothing to put back: the parent did not serialize it
            _flush(alias, inhibit_post_migrate=True)
            connection.creation.deserialize_db_from_string(contents)
            self.aliases.discard(alias)
            self.unknown.discard(alias)


def _flush(alias: str, inhibit_post_migrate: bool) -> None:
    """The flush of ``TransactionTestCase._fixture_teardown``."""
    from django.core.management import call_command

    call_command(
        "flush",
        verbosity=0,
        interactive=False,
        database=alias,
        reset_sequences=False,
        allow_cascade=False,
        inhibit_post_migrate=inhibit_post_migrate,
    )


class UnitSuite(unittest.TestSuite):
    """One unit's tests, run as a top-level suite; see the module."""

    def __init__(
        self,
        tests: Iterable[Any],
        *,
        announce: Callable[[str, str], None],
        databases: FlushedDatabases,
    ) -> None:
        super().__init__(tests)
        self._announce = announce
        self._databases = databases
        self._next_module: str | None = None

    def _handleClassSetUp(self, test: Any, result: Any) -> None:
        current = test.__class__
        if current is not getattr(result, "_previousTestClass", None) and not getattr(
            result, "_moduleSetUpFailed", False
        ):
            self._databases.class_starts(current)
            if not getattr(current, "__unittest_skip__", False):
                self._announce("setUpClass", class_label(current))
        super()._handleClassSetUp(test, result)  # type: ignore[misc]

    def _tearDownPreviousClass(self, test: Any, result: Any) -> None:
        previous = getattr(result, "_previousTestClass", None)
        if (
            previous is not None
            and previous is not test.__class__
            and not getattr(previous, "_classSetupFailed", False)
            and not getattr(result, "_moduleSetUpFailed", False)
            and not getattr(previous, "__unittest_skip__", False)
        ):
            self._announce("tearDownClass", class_label(previous))
        super()._tearDownPreviousClass(test, result)  # type: ignore[misc]

    def _handleModuleFixture(self, test: Any, result: Any) -> None:
        current = test.__class__.__module__
        if current != self._get_previous_module(result):  # type: ignore[attr-defined]
            # Announced once the previous module's teardown (which unittest
            # runs from here) is over.
            self._next_module = current
        super()._handleModuleFixture(test, result)  # type: ignore[misc]

    def _handleModuleTearDown(self, result: Any) -> None:
        previous = self._get_previous_module(result)  # type: ignore[attr-defined]
        if (
            previous is not None
            and not getattr(result, "_moduleSetUpFailed", False)
            and _has_module_teardown(previous)
        ):
            self._announce("tearDownModule", previous)
        try:
            super()._handleModuleTearDown(result)  # type: ignore[misc]
        finally:
            upcoming, self._next_module = self._next_module, None
            if upcoming is not None and _has(upcoming, "setUpModule"):
                self._announce("setUpModule", upcoming)


def _has(module: str, name: str) -> bool:
    return getattr(sys.modules.get(module), name, None) is not None


def _has_module_teardown(module: str) -> bool:
    cleanups = getattr(unittest.case, "_module_cleanups", None)
    return _has(module, "tearDownModule") or bool(cleanups)
