"""A very long single class beside a few short ones; every test sleeps.

Real suites have such a class (an admin test case with costly setUp, a
hundred-method resource test). It is one unit: all its tests run in one
process, in order, inside one class-level transaction, while the short
classes run beside it on the other worker.
"""

import os
import time

from django.contrib.auth.models import Group
from django.test import TestCase

LONG_TESTS = 150
PAUSE = 0.02


class LongClass(TestCase):
    ran: list[int] = []  # the tests this process has run, in order

    @classmethod
    def setUpTestData(cls):
        Group.objects.create(name="long")
        cls.pid = os.getpid()

    def check(self, i):
        time.sleep(PAUSE)
        self.assertEqual(os.getpid(), self.pid)
        self.assertEqual(LongClass.ran, list(range(i)))
        LongClass.ran.append(i)
        # Each test sees the class's data and none of the previous test's.
        self.assertEqual(list(Group.objects.values_list("name", flat=True)), ["long"])
        Group.objects.create(name=f"test {i}")


for _i in range(LONG_TESTS):
    setattr(LongClass, f"test_{_i:03d}", lambda self, i=_i: self.check(i))


def short_class(name):
    def test(self):
        time.sleep(PAUSE * 5)
        self.assertFalse(Group.objects.exists())

    return type(name, (TestCase,), {"test_a": test, "test_b": test})


ShortOne = short_class("ShortOne")
ShortTwo = short_class("ShortTwo")
ShortThree = short_class("ShortThree")
ShortFour = short_class("ShortFour")
