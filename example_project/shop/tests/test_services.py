"""Sequential checks of shop.services; no concurrency, so no race can show."""

import time
from decimal import Decimal

from django.test import TransactionTestCase

from shop.models import Counter, Product
from shop.services import (
    get_or_create_counter,
    increment_counter,
    increment_counter_locked,
    reserve_stock,
)

from .timeline import TimelineMixin


class CounterServiceTests(TimelineMixin, TransactionTestCase):
    def test_increment_counter_once(self) -> None:
        self.assertEqual(increment_counter("page-views"), 1)
        time.sleep(0.15)
        self.assertEqual(Counter.objects.get(name="page-views").value, 1)

    def test_increment_counter_locked_once(self) -> None:
        self.assertEqual(increment_counter_locked("logins"), 1)
        time.sleep(0.15)
        self.assertEqual(Counter.objects.get(name="logins").value, 1)

    def test_get_or_create_counter_returns_same_row(self) -> None:
        first = get_or_create_counter("signups")
        second = get_or_create_counter("signups")
        time.sleep(0.15)
        self.assertEqual(first.pk, second.pk)
        self.assertEqual(Counter.objects.filter(name="signups").count(), 1)


class StockServiceTests(TimelineMixin, TransactionTestCase):
    def test_reserve_stock_sequentially(self) -> None:
        product = Product.objects.create(name="Mug", stock=3, price=Decimal("8"))
        results = [reserve_stock(product.pk, 1) for _ in range(4)]
        time.sleep(0.15)
        self.assertEqual(results, [True, True, True, False])
        product.refresh_from_db()
        self.assertEqual(product.stock, 0)
