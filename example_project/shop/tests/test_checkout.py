"""Serial group "checkout": the three classes run in order in one process."""

import time
from decimal import Decimal

from django.test import TransactionTestCase
from django.urls import reverse

from shop.models import Order, Product
from shop.services import reserve_stock

from .timeline import TimelineMixin

CHECKOUT = ("checkout", "serial")


class CheckoutReserveTests(TimelineMixin, TransactionTestCase):
    mp_group = CHECKOUT

    def setUp(self) -> None:
        super().setUp()
        self.product = Product.objects.create(
            name="Kettle", stock=5, price=Decimal("30.00")
        )

    def test_reserve_within_stock(self) -> None:
        self.assertTrue(reserve_stock(self.product.pk, 3))
        time.sleep(0.15)
        self.product.refresh_from_db()
        self.assertEqual(self.product.stock, 2)

    def test_reserve_beyond_stock_refused(self) -> None:
        self.assertFalse(reserve_stock(self.product.pk, 6))
        time.sleep(0.15)
        self.product.refresh_from_db()
        self.assertEqual(self.product.stock, 5)


class CheckoutOrderTests(TimelineMixin, TransactionTestCase):
    mp_group = CHECKOUT

    def setUp(self) -> None:
        super().setUp()
        self.product = Product.objects.create(
            name="Toaster", stock=2, price=Decimal("45.00")
        )

    def test_orders_until_sold_out(self) -> None:
        url = reverse("shop:place-order")
        statuses = [
            self.client.post(
                url, {"product": self.product.pk, "quantity": 1}
            ).status_code
            for _ in range(3)
        ]
        time.sleep(0.15)
        self.assertEqual(statuses, [201, 201, 409])
        self.assertEqual(Order.objects.count(), 2)

    def test_bad_quantity_is_400(self) -> None:
        response = self.client.post(
            reverse("shop:place-order"), {"product": self.product.pk, "quantity": 0}
        )
        time.sleep(0.15)
        self.assertEqual(response.status_code, 400)


class CheckoutSummaryTests(TimelineMixin, TransactionTestCase):
    mp_group = CHECKOUT

    def setUp(self) -> None:
        super().setUp()
        self.product = Product.objects.create(
            name="Blender", stock=10, price=Decimal("60.00")
        )
        for quantity in (1, 2, 3):
            Order.objects.create(product=self.product, quantity=quantity)

    def test_units_ordered(self) -> None:
        total = sum(self.product.orders.values_list("quantity", flat=True))
        time.sleep(0.15)
        self.assertEqual(total, 6)

    def test_detail_reflects_stock(self) -> None:
        reserve_stock(self.product.pk, 4)
        response = self.client.get(
            reverse("shop:product-detail", args=[self.product.pk])
        )
        time.sleep(0.15)
        self.assertEqual(response.json()["stock"], 6)
