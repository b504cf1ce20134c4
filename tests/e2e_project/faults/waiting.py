"""A test that says it has started, then waits to be interrupted."""

import os
import time
import unittest
from pathlib import Path


class WaitsForTheSignal(unittest.TestCase):
    def test_waits(self):
        if not os.environ.get("CONCURRENT_RUNNER_WORKER"):
            self.skipTest("only waits inside a worker")
        Path(os.environ["WAITING_MARKER"]).touch()
        time.sleep(60)


class Quick(unittest.TestCase):
    def test_quick(self):
        pass
