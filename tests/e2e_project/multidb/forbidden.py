"""Tests that may use only "other", and calls that forget it (issue 20.1).

Named on the command line (``multidb.forbidden``), alone, this module makes
the run create a test database for "other" only: "default" still holds the
real database's settings, which neither a test nor a call may reach.
"""

import os

from django.db import connections, transaction
from django.test import TransactionTestCase
from django.test.testcases import DatabaseOperationForbidden

from concurrent_runner import ConcurrentTestMixin

from .models import Item


def write_default(name):
    Item.objects.create(name=name)  # forgets .using("other")
    return "written to default"


def atomic_on_default():
    with transaction.atomic(using="default"):
        return "entered"


def write_other(name):
    Item.objects.using("other").create(name=name)
    return str(connections["other"].settings_dict["NAME"])


def uses_no_database():
    return 42


class CallsOnOther(ConcurrentTestMixin, TransactionTestCase):
    databases = {"other"}

    def forbidden_here(self, function, *args):
        with self.assertRaises(DatabaseOperationForbidden) as caught:
            function(*args)
        return caught.exception

    def assert_fails_as_here(self, results, expected):
        self.assertEqual(len(results.errors), len(results), results)
        for wrapped in results.errors:
            self.assertIs(type(wrapped.error), DatabaseOperationForbidden)
            self.assertEqual(str(wrapped.error), str(expected))

    def test_calls_fail_on_default_as_the_test_does(self):
        expected = self.forbidden_here(write_default, "from the test")
        results = self.call_concurrently(2, write_default, name="from a call")
        self.assert_fails_as_here(results, expected)
        expected = self.forbidden_here(atomic_on_default)
        self.assert_fails_as_here(
            self.call_concurrently(1, atomic_on_default), expected
        )

    def test_calls_use_other_and_need_nothing_else(self):
        results = self.make_concurrent_calls(
            (write_other, {"name": "a"}), (write_other, {"name": "b"}),
            (uses_no_database, {}),
        )  # fmt: skip
        self.assertEqual(results.errors, [])
        mine = str(connections["other"].settings_dict["NAME"])
        self.assertIn("test", mine)
        self.assertEqual(results, [mine, mine, 42])
        self.assertEqual(
            set(Item.objects.using("other").values_list("name", flat=True))
            - {"seeded"},
            {"a", "b"},
        )


class TestsOnOther(TransactionTestCase):
    databases = {"other"}

    def test_the_test_may_not_write_default(self):
        with self.assertRaises(DatabaseOperationForbidden):
            Item.objects.create(name="from the test")

    def test_other_is_a_test_database(self):
        self.assertIn("test", str(connections["other"].settings_dict["NAME"]))
        Item.objects.using("other").create(name="c")
        self.assertTrue(Item.objects.using("other").filter(name="c").exists())


class CallServerKind(ConcurrentTestMixin, TransactionTestCase):
    """Which call server this process's first call used: one forked as a
    forked worker started, or a fresh interpreter (EXPECT_CALL_SERVER)."""

    databases = {"other"}

    def test_the_call_server_is_the_one_expected(self):
        from concurrent_runner.calls import concurrent

        self.assertEqual(self.call_concurrently(2, uses_no_database), [42, 42])
        kind = concurrent._current.kind
        self.assertIn(kind, ("forked", "fresh"))
        expected = os.environ.get("EXPECT_CALL_SERVER")
        if expected:
            self.assertEqual(kind, expected)
