"""concurrent_runner.parallel.unit_suite, in-process: which fixtures a unit
announces, in which order, and when a TestCase gets the migrations' data back."""

from __future__ import annotations

import sys
import types
import unittest
from typing import Any

from django.test import SimpleTestCase, TestCase, TransactionTestCase

from concurrent_runner.parallel.unit_suite import FlushedDatabases, UnitSuite


def module_with_fixtures(name: str, calls: list[str]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.setUpModule = lambda: calls.append(f"setUpModule {name}")  # type: ignore[attr-defined]
    module.tearDownModule = lambda: calls.append(f"tearDownModule {name}")  # type: ignore[attr-defined]
    sys.modules[name] = module
    return module


def test_class(module: str, name: str, calls: list[str]) -> type:
    def test(self: Any) -> None:
        calls.append(f"test {name}")

    return type(name, (unittest.TestCase,), {"__module__": module, "test_it": test})


class RecordingDatabases(FlushedDatabases):
    def __init__(self, flushed: list[str], unknown: list[str] | None = None) -> None:
        super().__init__(flushed, unknown or [])
        self.restored: list[set[str]] = []
        self.emptied: list[set[str]] = []

    def restore(self, aliases: set[str]) -> None:
        self.restored.append(set(aliases))
        self.aliases -= aliases
        self.unknown -= aliases

    def empty(self, aliases: set[str]) -> None:
        self.emptied.append(set(aliases))
        self.unknown -= aliases


class AnnouncementTests(unittest.TestCase):
    def setUp(self) -> None:
        self.calls: list[str] = []
        for name in ("fake_one", "fake_two"):
            module_with_fixtures(name, self.calls)
            self.addCleanup(sys.modules.pop, name)

    def announce(self, method: str, target: str) -> None:
        self.calls.append(f"announce {method} ({target})")

    def test_every_fixture_is_announced_just_before_it_runs(self) -> None:
        a = test_class("fake_one", "A", self.calls)
        b = test_class("fake_two", "B", self.calls)
        suite = UnitSuite(
            [a("test_it"), b("test_it")],
            announce=self.announce,
            databases=FlushedDatabases(),
        )
        suite.run(unittest.TestResult())
        self.assertEqual(
            self.calls,
            [
                "announce setUpModule (fake_one)",
                "setUpModule fake_one",
                "announce setUpClass (fake_one.A)",
                "test A",
                "announce tearDownClass (fake_one.A)",
                "announce tearDownModule (fake_one)",
                "tearDownModule fake_one",
                "announce setUpModule (fake_two)",
                "setUpModule fake_two",
                "announce setUpClass (fake_two.B)",
                "test B",
                "announce tearDownClass (fake_two.B)",
                "announce tearDownModule (fake_two)",
                "tearDownModule fake_two",
            ],
        )

    def test_a_module_without_fixtures_announces_none(self) -> None:
        module = types.ModuleType("fake_bare")
        sys.modules["fake_bare"] = module
        self.addCleanup(sys.modules.pop, "fake_bare")
        bare = test_class("fake_bare", "Bare", self.calls)
        suite = UnitSuite(
            [bare("test_it")], announce=self.announce, databases=FlushedDatabases()
        )
        suite.run(unittest.TestResult())
        self.assertEqual(
            self.calls,
            [
                "announce setUpClass (fake_bare.Bare)",
                "test Bare",
                "announce tearDownClass (fake_bare.Bare)",
            ],
        )


class FlushedDatabasesTests(SimpleTestCase):
    def classes(self) -> tuple[type, type, type]:
        # runtests.py configures one database, "default".
        case = type("Case", (TestCase,), {"databases": {"default"}})
        flushing = type("Flushing", (TransactionTestCase,), {"databases": {"default"}})
        simple = type("Simple", (SimpleTestCase,), {})
        return case, flushing, simple

    def test_a_testcase_gets_back_only_what_was_flushed(self) -> None:
        case, flushing, simple = self.classes()
        databases = RecordingDatabases([])
        databases.class_starts(case)
        databases.class_starts(simple)
        self.assertEqual(databases.restored, [set()])
        databases.class_starts(flushing)
        self.assertEqual(databases.aliases, {"default"})
        databases.class_starts(case)
        self.assertEqual(databases.restored[-1], {"default"})
        self.assertEqual(databases.aliases, set())

    def test_after_a_crash_a_transactiontestcase_starts_on_empty_tables(self) -> None:
        # Found by the differential test: a TransactionTestCase's worker
        # died in a test; the next one on that slot found its rows.
        _case, flushing, _simple = self.classes()
        databases = RecordingDatabases([], unknown=["default"])
        databases.class_starts(flushing)
        self.assertEqual(databases.emptied, [{"default"}])
        databases.class_starts(flushing)
        self.assertEqual(databases.emptied, [{"default"}, set()])

    def test_after_a_crash_a_testcase_gets_the_migrations_contents(self) -> None:
        case, flushing, _simple = self.classes()
        databases = RecordingDatabases([], unknown=["default"])
        databases.class_starts(case)
        self.assertEqual(databases.restored, [{"default"}])
        databases.class_starts(flushing)
        self.assertEqual(databases.emptied, [set()])

    def test_what_the_parent_says_was_flushed_counts(self) -> None:
        case, _flushing, _simple = self.classes()
        databases = RecordingDatabases(["default"])
        databases.class_starts(case)
        self.assertEqual(databases.restored, [{"default"}])


class EmptyingTests(TransactionTestCase):
    def test_a_flush_empties_what_a_crash_left(self) -> None:
        from django.contrib.auth.models import Group

        Group.objects.create(name="left by a crash")
        databases = FlushedDatabases([], unknown=["default"])
        databases.empty({"default"})
        self.assertFalse(Group.objects.exists())
        self.assertEqual(databases.unknown, set())
