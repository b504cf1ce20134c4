"""A long class that may run as chunks, beside classes that may not.

Every fixture and test writes a line to the file SPLIT_LOG names (the
process, what ran), so that a test of the runner can tell which process ran
what, how often each fixture ran, and in which order.
"""

import os
import time

from django.contrib.auth.models import Group
from django.test import TestCase

PAUSE = 0.02
TESTS = 12


def note(*words):
    path = os.environ.get("SPLIT_LOG")
    if path:
        with open(path, "a") as log:
            log.write(" ".join(str(w) for w in (os.getpid(), *words)) + "\n")


def setUpModule():
    note("setUpModule")


def tearDownModule():
    note("tearDownModule")


class Logged(TestCase):
    """Logs its fixtures and tests; each test sees the class's data only."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        note("setUpClass", cls.__name__)

    @classmethod
    def setUpTestData(cls):
        Group.objects.create(name=cls.__name__)
        note("setUpTestData", cls.__name__)

    @classmethod
    def tearDownClass(cls):
        note("tearDownClass", cls.__name__)
        super().tearDownClass()

    def check(self, i):
        time.sleep(PAUSE)
        note("test", type(self).__name__, i)
        names = list(Group.objects.values_list("name", flat=True))
        self.assertEqual(names, [type(self).__name__])
        Group.objects.create(name=f"test {i}")


def with_tests(cls):
    for i in range(TESTS):
        setattr(cls, f"test_{i:02d}", lambda self, i=i: self.check(i))
    return cls


@with_tests
class Chunked(Logged):
    @classmethod
    def setUpClass(cls):
        time.sleep(0.3)  # what each chunk repeats, measured in the durations
        super().setUpClass()


@with_tests
class Whole(Logged):
    mp_split = False


class WholeChild(Whole):
    """Inherits Whole's tests and its refusal."""


@with_tests
class Serial(Logged):
    mp_group = ("ledger", "serial")


@with_tests
class Short(Logged):
    pass
