"""View tests in the free group "views": each class may run alongside others."""

import time
from decimal import Decimal

from django.test import TestCase
from django.urls import reverse

from shop.models import Order, Product

from .timeline import TimelineMixin


class ProductDetailViewTests(TimelineMixin, TestCase):
    mp_group = "views"
    product: Product

    @classmethod
    def setUpTestData(cls) -> None:
        cls.product = Product.objects.create(
            name="Lamp", stock=7, price=Decimal("25.00")
        )

    def test_returns_json(self) -> None:
        response = self.client.get(
            reverse("shop:product-detail", args=[self.product.pk])
        )
        time.sleep(0.2)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"name": "Lamp", "stock": 7})

    def test_missing_product_is_404(self) -> None:
        response = self.client.get(reverse("shop:product-detail", args=[0]))
        time.sleep(0.2)
        self.assertEqual(response.status_code, 404)


class PlaceOrderViewTests(TimelineMixin, TestCase):
    mp_group = "views"
    product: Product

    @classmethod
    def setUpTestData(cls) -> None:
        cls.product = Product.objects.create(
            name="Chair", stock=3, price=Decimal("40.00")
        )

    def order(self, quantity: int):
        return self.client.post(
            reverse("shop:place-order"),
            {"product": self.product.pk, "quantity": quantity},
        )

    def test_order_created(self) -> None:
        response = self.order(2)
        time.sleep(0.2)
        self.assertEqual(response.status_code, 201)
        self.product.refresh_from_db()
        self.assertEqual(self.product.stock, 1)
        self.assertEqual(Order.objects.get().quantity, 2)

    def test_insufficient_stock_is_409(self) -> None:
        response = self.order(4)
        time.sleep(0.2)
        self.assertEqual(response.status_code, 409)
        self.assertFalse(Order.objects.exists())

    def test_get_not_allowed(self) -> None:
        response = self.client.get(reverse("shop:place-order"))
        time.sleep(0.1)
        self.assertEqual(response.status_code, 405)
