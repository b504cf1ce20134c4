"""Classes whose first test is skipped by a decorator (Python 3.12.0 and
3.12.1 skip such a test without starting it)."""

import time
import unittest


class SkippedFirst(unittest.TestCase):
    @unittest.skip("skipped before it starts")
    def test_1_skipped(self):
        pass

    def test_2_fails(self):
        self.fail("the class's real failure")


class SlowThenSkipped(unittest.TestCase):
    def test_1_slow(self):
        time.sleep(1.0)

    @unittest.skip("skipped after a slow test")
    def test_2_skipped(self):
        pass
