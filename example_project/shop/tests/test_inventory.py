"""Isolated-free group "inventory": classes may only overlap with each other."""

import time
from decimal import Decimal

from django.db.models import F, Sum
from django.test import TransactionTestCase

from shop.models import Counter, Product
from shop.services import increment_counter_locked

from .timeline import TimelineMixin

INVENTORY = ("inventory", "isolated_free")


def make_products() -> None:
    Product.objects.bulk_create(
        Product(name=f"Bolt {size}", stock=size * 10, price=Decimal("0.10"))
        for size in range(1, 5)
    )


class InventoryRestockTests(TimelineMixin, TransactionTestCase):
    mp_group = INVENTORY

    def setUp(self) -> None:
        super().setUp()
        make_products()

    def test_restock_all(self) -> None:
        Product.objects.update(stock=F("stock") + 5)
        time.sleep(0.2)
        self.assertEqual(Product.objects.aggregate(total=Sum("stock"))["total"], 120)

    def test_restock_low_items_only(self) -> None:
        Product.objects.filter(stock__lt=25).update(stock=25)
        time.sleep(0.2)
        stocks = Product.objects.order_by("stock").values_list("stock", flat=True)
        self.assertEqual(list(stocks), [25, 25, 30, 40])


class InventoryAuditTests(TimelineMixin, TransactionTestCase):
    mp_group = INVENTORY

    def setUp(self) -> None:
        super().setUp()
        make_products()

    def test_total_stock(self) -> None:
        time.sleep(0.2)
        self.assertEqual(Product.objects.aggregate(total=Sum("stock"))["total"], 100)

    def test_no_negative_stock(self) -> None:
        time.sleep(0.2)
        self.assertFalse(Product.objects.filter(stock__lt=0).exists())


class InventoryCounterTests(TimelineMixin, TransactionTestCase):
    mp_group = INVENTORY

    def test_locked_increments_accumulate(self) -> None:
        for _ in range(5):
            increment_counter_locked("audits")
        time.sleep(0.2)
        self.assertEqual(Counter.objects.get(name="audits").value, 5)

    def test_counters_are_independent(self) -> None:
        increment_counter_locked("a")
        increment_counter_locked("b")
        increment_counter_locked("b")
        time.sleep(0.2)
        values = dict(Counter.objects.values_list("name", "value"))
        self.assertEqual(values, {"a": 1, "b": 2})
