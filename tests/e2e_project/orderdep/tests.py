"""Tests that depend on what ran before them in the same process.

Serially (classes in name order) AnAppPrepares runs before Victim, which
needs it, and ZPoisons after PoisonVictim, which it would break. In
parallel (two workers, no durations) Victim shares a worker with Busy and
InnocentToo, not with AnAppPrepares, and fails; the slow tests keep the
other worker from taking Victim over.
"""

import time
import unittest

from . import state


class AnAppPrepares(unittest.TestCase):
    def test_prepare(self):
        state.prepared = True
        time.sleep(1)


class Busy(unittest.TestCase):
    def test_busy(self):
        time.sleep(1)


class Innocent(unittest.TestCase):
    def test_innocent(self):
        pass


class InnocentToo(Innocent):
    pass


class PoisonVictim(unittest.TestCase):
    def test_victim(self):
        self.assertFalse(state.poisoned, "something poisoned this process")


class Victim(unittest.TestCase):
    def test_victim(self):
        self.assertTrue(state.prepared, "nothing prepared this process")


class ZPoisons(unittest.TestCase):
    def test_poison(self):
        state.poisoned = True
