"""Real races, reproduced with concurrent calls against the test database.

Each call runs in its own fresh process, connected to this test's database
(this worker's clone under --parallel-groups), and all start together.
"""

import unittest
from decimal import Decimal

from django.db import connection
from django.test import TransactionTestCase

from concurrent_runner import ConcurrentTestMixin
from shop.models import Counter, Product
from shop.services import (
    get_or_create_counter,
    increment_counter,
    increment_counter_locked,
    reserve_stock,
)

from .timeline import TimelineMixin

CALLS = 10
# Long enough that the calls all read before any writes, even on a busy
# machine (2 cores shared with other test processes): the race is certain.
WINDOW = 1.0


def database_name() -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


class CounterRaceTests(TimelineMixin, ConcurrentTestMixin, TransactionTestCase):
    def test_read_modify_write_without_a_lock_loses_updates(self) -> None:
        Counter.objects.create(name="hits")
        results = self.call_concurrently(
            CALLS, increment_counter, name="hits", window=WINDOW
        )
        self.assertEqual(results.errors, [])
        # Every call read 0 before any wrote: most increments are lost.
        self.assertLess(Counter.objects.get(name="hits").value, CALLS)

    @unittest.skipIf(
        connection.vendor == "sqlite", "SQLite has no row locks (FOR UPDATE is ignored)"
    )
    def test_select_for_update_loses_none(self) -> None:
        Counter.objects.create(name="hits")
        results = self.call_concurrently(
            CALLS, increment_counter_locked, name="hits", window=0.01
        )
        self.assertEqual(results.errors, [])
        self.assertEqual(Counter.objects.get(name="hits").value, CALLS)
        self.assertEqual(sorted(results), list(range(1, CALLS + 1)))

    def test_get_or_create_on_a_unique_name_gives_one_row(self) -> None:
        results = self.call_concurrently(CALLS, get_or_create_counter, name="once")
        self.assertEqual(results.errors, [])
        self.assertEqual(len({counter.pk for counter in results}), 1)
        self.assertEqual(Counter.objects.filter(name="once").count(), 1)


class OversellTests(TimelineMixin, ConcurrentTestMixin, TransactionTestCase):
    def test_check_then_write_oversells(self) -> None:
        product = Product.objects.create(
            name="Last kettle", stock=1, price=Decimal("30")
        )
        results = self.call_concurrently(
            5, reserve_stock, product_id=product.pk, quantity=1, window=WINDOW
        )
        self.assertEqual(results.errors, [])
        # One unit in stock, yet more than one call was told it got it.
        self.assertGreater(sum(results), 1)

    def test_calls_use_this_tests_database(self) -> None:
        self.assertEqual(
            self.call_concurrently(2, database_name), [database_name()] * 2
        )
