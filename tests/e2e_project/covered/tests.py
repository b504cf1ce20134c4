import os

from django.test import TransactionTestCase

from concurrent_runner import ConcurrentTestMixin

from .code import only_in_a_call, only_in_a_worker


def note_process(role):
    """Where this runs (COVERED_PROCESSES names the file): a forked worker's
    parent is the fork server, a fresh one's the test process."""
    if path := os.environ.get("COVERED_PROCESSES"):
        with open(path, "a") as file:
            file.write(f"{role} {os.getpid()} {os.getppid()}\n")


class WorkerSide(TransactionTestCase):
    def test_worker(self):
        note_process("test")
        self.assertEqual(only_in_a_worker(2), 5)
        self.assertEqual(only_in_a_worker(0), -1)


class CallSide(ConcurrentTestMixin, TransactionTestCase):
    def test_call(self):
        note_process("test")
        results = self.make_concurrent_calls(
            (only_in_a_call, {"x": 2}), (only_in_a_call, {"x": 0})
        )
        self.assertEqual(results, [5, -1])
