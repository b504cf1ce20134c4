"""Model tests with no mp_group: every class is its own free unit."""

import time
import unittest
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F
from django.test import TestCase, TransactionTestCase

from shop.models import Counter, Order, Product

from .timeline import TimelineMixin


class ProductModelTests(TimelineMixin, TestCase):
    def test_str_is_name(self) -> None:
        product = Product.objects.create(name="Widget", price=Decimal("9.99"))
        time.sleep(0.2)
        self.assertEqual(str(product), "Widget")
        self.assertEqual(product.stock, 0)

    def test_price_round_trips(self) -> None:
        for price in ["0.01", "9.99", "1234.50", "99999999.99"]:
            with self.subTest(price=price):
                product = Product.objects.create(
                    name=f"Priced {price}", price=Decimal(price)
                )
                product.refresh_from_db()
                self.assertEqual(product.price, Decimal(price))
        time.sleep(0.2)

    @unittest.skip("kept to show how skipped tests are reported")
    def test_skipped(self) -> None:
        self.fail("skipped tests never run")


class OrderModelTests(TimelineMixin, TestCase):
    product: Product

    @classmethod
    def setUpTestData(cls) -> None:
        cls.product = Product.objects.create(
            name="Gadget", stock=5, price=Decimal("19.00")
        )

    def test_order_links_product(self) -> None:
        order = Order.objects.create(product=self.product, quantity=2)
        time.sleep(0.2)
        self.assertEqual(list(self.product.orders.all()), [order])
        self.assertEqual(str(order), "2 x Gadget")

    def test_created_is_set(self) -> None:
        order = Order.objects.create(product=self.product, quantity=1)
        time.sleep(0.15)
        self.assertIsNotNone(order.created)
        self.assertIsNotNone(order.created.tzinfo)

    @unittest.expectedFailure
    def test_order_creation_decrements_stock(self) -> None:
        # Creating an Order deliberately leaves stock alone (reservation lives
        # in services.reserve_stock), so this assertion really fails.
        Order.objects.create(product=self.product, quantity=1)
        time.sleep(0.15)
        self.product.refresh_from_db()
        self.assertEqual(self.product.stock, 4)


class CounterModelTests(TimelineMixin, TransactionTestCase):
    def test_name_is_unique(self) -> None:
        Counter.objects.create(name="hits")
        with self.assertRaises(IntegrityError), transaction.atomic():
            Counter.objects.create(name="hits")
        time.sleep(0.2)
        self.assertEqual(Counter.objects.count(), 1)

    def test_f_expression_update(self) -> None:
        counter = Counter.objects.create(name="visits", value=41)
        Counter.objects.filter(pk=counter.pk).update(value=F("value") + 1)
        time.sleep(0.2)
        counter.refresh_from_db()
        self.assertEqual(counter.value, 42)


class ProductQueryTests(TimelineMixin, TransactionTestCase):
    def test_in_stock_filter(self) -> None:
        Product.objects.bulk_create(
            [
                Product(name="Empty", stock=0, price=Decimal("1.00")),
                Product(name="Full", stock=3, price=Decimal("2.00")),
            ]
        )
        time.sleep(0.2)
        names = Product.objects.filter(stock__gt=0).values_list("name", flat=True)
        self.assertEqual(list(names), ["Full"])

    def test_cascade_deletes_orders(self) -> None:
        product = Product.objects.create(name="Doomed", stock=1, price=Decimal("3"))
        Order.objects.create(product=product, quantity=1)
        product.delete()
        time.sleep(0.2)
        self.assertFalse(Order.objects.exists())
