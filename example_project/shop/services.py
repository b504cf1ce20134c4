"""Deliberately racy (and one safe) data-access helpers.

They exist so concurrency tests have real races to provoke: every racy helper
sleeps for ``window`` seconds between its read and its write, which widens the
gap another process needs to slip into.
"""

import time

from django.db import transaction

from .models import Counter, Product


def get_or_create_counter(name: str) -> Counter:
    """Return the counter called ``name``, creating it at 0 if missing.

    Safe under concurrency only because ``Counter.name`` is unique:
    ``get_or_create`` catches the IntegrityError of a losing concurrent insert
    and re-reads the row the winner created, so every caller gets the same row.
    """
    counter, _ = Counter.objects.get_or_create(name=name)
    return counter


def increment_counter(name: str, window: float = 0.001) -> int:
    """Add 1 to the counter without any locking; return the value written.

    Racy: a read-modify-write on a stale value. Two callers that both read N
    during ``window`` both write N + 1, so one increment is lost.
    """
    counter = get_or_create_counter(name)
    value = counter.value
    time.sleep(window)
    counter.value = value + 1
    counter.save(update_fields=["value"])
    return counter.value


def increment_counter_locked(name: str, window: float = 0.001) -> int:
    """Add 1 to the counter under a row lock; return the value written.

    Safe: ``select_for_update()`` holds the row lock until the transaction
    commits, so concurrent callers queue up and each reads the previous
    caller's result. SQLite ignores ``FOR UPDATE``; there the database-wide
    write lock serialises writers instead (a contending writer may get
    "database is locked" rather than lose an update).
    """
    get_or_create_counter(name)
    with transaction.atomic():
        counter = Counter.objects.select_for_update().get(name=name)
        value = counter.value
        time.sleep(window)
        counter.value = value + 1
        counter.save(update_fields=["value"])
    return counter.value


def reserve_stock(product_id: int, quantity: int, window: float = 0.001) -> bool:
    """Take ``quantity`` units out of stock; return False if there are too few.

    Racy: check-then-write on a stale read. Two callers can both see enough
    stock, and both write ``stock - quantity`` computed from the same read, so
    the product is oversold while its stock only drops once.
    """
    stock = Product.objects.values_list("stock", flat=True).get(pk=product_id)
    if stock < quantity:
        return False
    time.sleep(window)
    Product.objects.filter(pk=product_id).update(stock=stock - quantity)
    return True
