"""Tests that break their worker on purpose. They only misbehave inside a
worker (CONCURRENT_RUNNER_WORKER is set); elsewhere they skip."""

import ctypes
import os
import signal
import time
import unittest


def in_worker(test):
    if not os.environ.get("CONCURRENT_RUNNER_WORKER"):
        test.skipTest("only misbehaves inside a worker")


def crash_class(name, crash):
    """A class whose middle test crashes; the others must still run."""

    def before(self):
        pass

    def middle(self):
        in_worker(self)
        crash()

    def after(self):
        pass

    return type(
        name,
        (unittest.TestCase,),
        {"test_a_before": before, "test_b_crash": middle, "test_c_after": after},
    )


ExitCrash = crash_class("ExitCrash", lambda: os._exit(3))
KillCrash = crash_class("KillCrash", lambda: os.kill(os.getpid(), signal.SIGKILL))
SegfaultCrash = crash_class("SegfaultCrash", lambda: ctypes.string_at(0))


def _interrupt():
    raise KeyboardInterrupt("raised by the test")


def _exit():
    raise SystemExit(2)


InterruptRaised = crash_class("InterruptRaised", _interrupt)
SystemExitRaised = crash_class("SystemExitRaised", _exit)


class Hang(unittest.TestCase):
    def test_a_hangs(self):
        in_worker(self)
        time.sleep(120)

    def test_b_after(self):
        pass
