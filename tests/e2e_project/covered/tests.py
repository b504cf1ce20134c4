from django.test import TransactionTestCase

from concurrent_runner import ConcurrentTestMixin

from .code import only_in_a_call, only_in_a_worker


class WorkerSide(TransactionTestCase):
    def test_worker(self):
        self.assertEqual(only_in_a_worker(2), 5)


class CallSide(ConcurrentTestMixin, TransactionTestCase):
    def test_call(self):
        self.assertEqual(self.call_concurrently(2, only_in_a_call, x=2), [5, 5])
