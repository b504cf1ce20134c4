"""A test whose worker ignores SIGTERM, so only SIGKILL ends it."""

import os
import signal
import time
import unittest
from pathlib import Path


class IgnoresSigterm(unittest.TestCase):
    def test_stubborn(self):
        if not os.environ.get("CONCURRENT_RUNNER_WORKER"):
            self.skipTest("only misbehaves inside a worker")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Path(os.environ["STUBBORN_MARKER"]).touch()
        time.sleep(60)


class Quick(unittest.TestCase):
    def test_quick(self):
        pass
