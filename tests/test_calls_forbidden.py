"""Concurrent calls reach only the databases their calling test may use;
any other alias fails in the call as it fails in the test (issue 20.1)."""

from __future__ import annotations

from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase
from django.test.testcases import DatabaseOperationForbidden

from concurrent_runner import ConcurrentTestMixin
from concurrent_runner.calls.forbidden import forbidden_here

from . import call_funcs


class ForbiddenCallsMixin(ConcurrentTestMixin):
    """The cases, for a test class that may not use "default"."""

    def failure_here(self, function):
        with self.assertRaises(DatabaseOperationForbidden) as caught:
            function()
        return caught.exception

    def assert_same_failure(self, function, n=2):
        expected = self.failure_here(function)
        results = self.call_concurrently(n, function)
        self.assertEqual(len(results.errors), n, results)
        for wrapped in results.errors:
            self.assertIs(type(wrapped.error), DatabaseOperationForbidden)
            self.assertEqual(str(wrapped.error), str(expected))
        return str(expected)

    def test_a_query_fails_in_the_call_with_djangos_message(self):
        message = self.assert_same_failure(call_funcs.count_groups)
        self.assertIn("Database queries to 'default' are not allowed", message)

    def test_a_transaction_fails_as_in_a_test_not_yet_connected(self):
        # In the test itself it depends on whether this process's connection
        # happens to be open already (an earlier test used it): if not,
        # Django fails it as "threaded connections"; if so, only a query
        # fails. A call process is never connected.
        (wrapped,) = self.call_concurrently(1, call_funcs.atomic_default)
        self.assertIs(type(wrapped.error), DatabaseOperationForbidden)
        self.assertEqual(
            str(wrapped.error),
            f"Database threaded connections to 'default' are not allowed in "
            f"{self.where}. {self.fix.format(test=type(self).__qualname__)}",
        )

    def test_a_call_that_needs_no_database_works(self):
        self.assertEqual(self.call_concurrently(2, call_funcs.add, a=1, b=2), [3, 3])

    def test_the_failures_are_read_from_djangos_own(self):
        forbidden = forbidden_here()
        self.assertEqual(list(forbidden), ["default"])
        self.assertEqual(
            sorted(forbidden["default"]),
            [
                "chunked_cursor",
                "connect",
                "cursor",
                "ensure_connection",
                "temporary_connection",
            ],
        )


class TransactionTestCaseWithoutDefault(ForbiddenCallsMixin, TransactionTestCase):
    databases: set[str] = set()
    where = "this test"
    fix = (
        "Add 'default' to tests.test_calls_forbidden.{test}.databases to ensure "
        "proper test isolation and silence this failure."
    )


class SimpleTestCaseCalls(ForbiddenCallsMixin, SimpleTestCase):
    where = "SimpleTestCase subclasses"
    fix = (
        "Either subclass TestCase or TransactionTestCase to ensure proper test "
        "isolation or add 'default' to tests.test_calls_forbidden.{test}.databases "
        "to silence this failure."
    )

    def test_djangos_message_for_simple_test_cases(self):
        message = self.assert_same_failure(call_funcs.count_groups, n=1)
        self.assertIn("not allowed in SimpleTestCase subclasses", message)


class AllowedTests(ConcurrentTestMixin, TransactionTestCase):
    def test_nothing_is_forbidden_where_default_is_allowed(self):
        self.assertEqual(forbidden_here(), {})
        self.assertEqual(self.call_concurrently(1, call_funcs.count_groups), [0])
        self.assertIn("test", str(connection.settings_dict["NAME"]))
