"""Tests that print once the run's stdout is a broken pipe (``stdio.piped``).

Each waits until the file named by STDIO_BARRIER exists: whoever runs the
suite closes the reading end of its stdout first. Two classes, so that a
parallel run has two units (one would run in-process).
"""

import os
import time
import unittest
from pathlib import Path


def wait_for_the_barrier(test):
    barrier = Path(os.environ["STDIO_BARRIER"])
    deadline = time.monotonic() + 60
    while not barrier.exists():
        test.assertLess(time.monotonic(), deadline, "no barrier within 60s")
        time.sleep(0.01)


class Piped(unittest.TestCase):
    def test_prints_after_the_pipe_broke(self):
        wait_for_the_barrier(self)
        print("<<printed after the pipe broke>>")


class PipedToo(unittest.TestCase):
    def test_prints_after_the_pipe_broke(self):
        wait_for_the_barrier(self)
        print("<<printed after the pipe broke, too>>")
