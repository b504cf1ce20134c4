"""Every kind of outcome, so replay can be checked against a serial run."""

import doctest
import sys
import unittest

from django.test import SimpleTestCase, TestCase, TransactionTestCase

from .models import Note


def load_tests(loader, tests, ignore):
    from . import doctested

    tests.addTests(doctest.DocTestSuite(doctested))
    return tests


class Unpicklable(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.handle = lambda: None  # lambdas do not pickle

    def __reduce__(self):
        raise TypeError("Unpicklable cannot be pickled")


class Passing(TestCase):
    def test_write(self):
        Note.objects.create(text="a")
        self.assertEqual(Note.objects.count(), 1)

    def test_prints(self):
        print("printed by test_prints")


class Failing(TransactionTestCase):
    mp_group = "failing"
    # Its flush must not re-run post_migrate, or classes with a serialized
    # rollback that run after it (in any order) would collide on content types.
    serialized_rollback = True

    def test_fails(self):
        Note.objects.count()  # a query for --debug-sql to show
        print("output of the failing test")
        sys.stderr.write("stderr of the failing test\n")
        self.assertEqual(1, 2, "one is not two")

    def test_errors(self):
        raise ValueError("boom")

    def test_unpicklable(self):
        raise Unpicklable("cannot travel")


class Mixed(SimpleTestCase):
    def test_subtests(self):
        for i in range(4):
            with self.subTest(i=i):
                self.assertLess(i, 2)

    @unittest.skip("not today")
    def test_skipped(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertTrue(False)

    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass


class BrokenSetUpClass(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        raise RuntimeError("setUpClass broke")

    def test_never_runs(self):
        pass
