"""Isolated-serial group "maintenance": one process, nothing else running."""

import time
from datetime import timedelta
from decimal import Decimal

from django.test import TransactionTestCase
from django.utils import timezone

from shop.models import Counter, Order, Product

from .timeline import TimelineMixin

MAINTENANCE = ("maintenance", "isolated_serial")


class MaintenancePurgeTests(TimelineMixin, TransactionTestCase):
    mp_group = MAINTENANCE

    def setUp(self) -> None:
        super().setUp()
        product = Product.objects.create(name="Crate", stock=9, price=Decimal("5"))
        old = Order.objects.create(product=product, quantity=1)
        # auto_now_add ignores values passed to create(), so backdate afterwards.
        Order.objects.filter(pk=old.pk).update(
            created=timezone.now() - timedelta(days=400)
        )
        Order.objects.create(product=product, quantity=2)

    def test_purge_old_orders(self) -> None:
        cutoff = timezone.now() - timedelta(days=365)
        deleted, _ = Order.objects.filter(created__lt=cutoff).delete()
        time.sleep(0.25)
        self.assertEqual(deleted, 1)
        self.assertEqual(Order.objects.get().quantity, 2)

    def test_purge_unsold_products(self) -> None:
        Product.objects.create(name="Unsold", stock=1, price=Decimal("1"))
        Product.objects.filter(orders__isnull=True).delete()
        time.sleep(0.25)
        self.assertEqual(
            list(Product.objects.values_list("name", flat=True)), ["Crate"]
        )


class MaintenanceResetTests(TimelineMixin, TransactionTestCase):
    mp_group = MAINTENANCE

    def setUp(self) -> None:
        super().setUp()
        Counter.objects.bulk_create(
            Counter(name=f"metric-{i}", value=i * 3) for i in range(4)
        )

    def test_reset_counters(self) -> None:
        Counter.objects.update(value=0)
        time.sleep(0.25)
        self.assertFalse(Counter.objects.exclude(value=0).exists())

    def test_drop_empty_counters(self) -> None:
        Counter.objects.filter(value=0).delete()
        time.sleep(0.25)
        self.assertEqual(Counter.objects.count(), 3)
