"""Tests that see which migrations their worker's clone has.

Each TestCase finds the rows the migrations wrote (``v1``, and ``v2`` once
KEPT_V2=1 adds the second migration); each TransactionTestCase flushes its
clone, which a later --keepdb run must put back before a TestCase there.
"""

import os

from django.test import TestCase, TransactionTestCase

from .models import Kept


def expected() -> list[str]:
    return ["v1", "v2"] if os.environ.get("KEPT_V2") == "1" else ["v1"]


def finds_the_rows(name):
    def test_rows(self):
        self.assertEqual(
            sorted(Kept.objects.values_list("name", flat=True)), expected()
        )

    return type(name, (TestCase,), {"test_rows": test_rows})


def flushing(name):
    def test_writes(self):
        Kept.objects.create(name=name)
        self.assertIn(name, Kept.objects.values_list("name", flat=True))

    return type(name, (TransactionTestCase,), {"test_writes": test_writes})


FindsOne = finds_the_rows("FindsOne")
FindsTwo = finds_the_rows("FindsTwo")
FindsThree = finds_the_rows("FindsThree")
FindsFour = finds_the_rows("FindsFour")
FlushesOne = flushing("FlushesOne")
FlushesTwo = flushing("FlushesTwo")
FlushesThree = flushing("FlushesThree")
FlushesFour = flushing("FlushesFour")
