"""A module beside the one that breaks, which must run as usual."""

import unittest


class Fine(unittest.TestCase):
    def test_fine(self):
        pass
