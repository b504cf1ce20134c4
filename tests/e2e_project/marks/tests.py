"""Tests that the backend's features mark (see marks.backend): serially
one is skipped and one an expected failure, under RUNNING_DJANGOS_TEST_SUITE."""

from django.test import TestCase


class Marked(TestCase):
    def test_skipped_by_the_features(self):
        self.fail("the backend's features skip this test")

    def test_expected_to_fail_by_the_features(self):
        self.fail("the backend's features expect this test to fail")

    def test_unmarked(self):
        pass


class AlsoMarked(TestCase):
    """A second class, so that a parallel run has a unit for each worker."""

    def test_unmarked(self):
        pass
