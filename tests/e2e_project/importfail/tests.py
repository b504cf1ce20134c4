"""A module that imports in the parent but not in a worker."""

import os
import unittest

if os.environ.get("CONCURRENT_RUNNER_WORKER"):
    raise ImportError("only the parent can import importfail.tests")


class OnlyInParent(unittest.TestCase):
    def test_one(self):
        pass

    def test_two(self):
        pass
