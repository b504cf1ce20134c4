"""Class and module fixtures that break their worker on purpose.

FIXTURE_FAULT names the fault (exit, kill, segfault, hang) and FIXTURE_WHERE
the fixture (setUpClass, tearDownClass, setUpModule, tearDownModule). They
only misbehave inside a worker: serially the process itself would die.
"""

import ctypes
import os
import signal
import time
import unittest

FAULTS = {
    "exit": lambda: os._exit(3),
    "kill": lambda: os.kill(os.getpid(), signal.SIGKILL),
    "segfault": lambda: ctypes.string_at(0),
    "hang": lambda: time.sleep(120),
}


def fault_in(where):
    if os.environ.get("FIXTURE_WHERE") == where and os.environ.get(
        "CONCURRENT_RUNNER_WORKER"
    ):
        FAULTS[os.environ["FIXTURE_FAULT"]]()


def setUpModule():
    fault_in("setUpModule")


def tearDownModule():
    fault_in("tearDownModule")


class Breaks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        fault_in("setUpClass")

    @classmethod
    def tearDownClass(cls):
        fault_in("tearDownClass")
        super().tearDownClass()

    def test_one(self):
        pass

    def test_two(self):
        pass
