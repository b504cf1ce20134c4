"""A test module that takes its time to import, when asked to."""

import os
import time
import unittest

if os.environ.get("PAUSE_ON_IMPORT"):
    print("Importing slowly.", flush=True)
    time.sleep(float(os.environ["PAUSE_ON_IMPORT"]))


class Quick(unittest.TestCase):
    def test_quick(self):
        pass
