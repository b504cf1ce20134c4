"""A data migration's row, and the tests that flush it away.

Serially, Django runs every TestCase before any TransactionTestCase, whose
flush deletes the row; so a TestCase always finds it. In a parallel run an
isolated group's phase comes after the shared phase's flushes on the same
worker, and a serial group may mix both kinds: a TestCase there must still
find the database as the migrations left it.
"""

from django.test import TestCase, TransactionTestCase

from .models import Seed


class FindsTheSeed(TestCase):
    def test_the_row_is_there(self):
        self.assertEqual(
            list(Seed.objects.values_list("name", flat=True)), ["from the migration"]
        )


def flushing(name):
    def test_writes(self):
        Seed.objects.create(name=name)
        self.assertTrue(Seed.objects.filter(name=name).exists())

    return type(name, (TransactionTestCase,), {"test_writes": test_writes})


FlushesOne = flushing("FlushesOne")
FlushesTwo = flushing("FlushesTwo")
FlushesThree = flushing("FlushesThree")
FlushesFour = flushing("FlushesFour")


class FindsTheSeedLater(FindsTheSeed):
    """Runs in a phase of its own, after the flushes, on a worker that ran
    some of them."""

    mp_group = ("later", "isolated_serial")


class FindsTheSeedInAMixedGroup(FindsTheSeed):
    mp_group = ("mixed", "serial")


class FlushesInAMixedGroup(TransactionTestCase):
    mp_group = ("mixed", "serial")

    def test_writes(self):
        Seed.objects.create(name="mixed")
