"""A suite whose first unit fails at once while the others are slow."""

import time
import unittest


def slow_class(name):
    def test(self):
        time.sleep(0.5)

    return type(name, (unittest.TestCase,), {f"test_{i}": test for i in range(3)})


class AFailsFirst(unittest.TestCase):
    """Four tests, so that without recorded durations it is planned first."""

    def test_a_fails(self):
        self.fail("first failure")

    def test_b(self):
        pass

    def test_c(self):
        pass

    def test_d(self):
        pass


SlowOne = slow_class("SlowOne")
SlowTwo = slow_class("SlowTwo")
SlowThree = slow_class("SlowThree")
SlowFour = slow_class("SlowFour")
SlowFive = slow_class("SlowFive")
SlowSix = slow_class("SlowSix")
