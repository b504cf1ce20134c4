"""A test that closes sys.stdout, and tests after it (``stdio.closing``)."""

import sys
import unittest


class Closing(unittest.TestCase):
    def test_1_closes_stdout(self):
        sys.stdout.close()

    def test_2_after(self):
        sys.stderr.write("<<stderr still works>>\n")


class Other(unittest.TestCase):
    def test_other(self):
        pass
