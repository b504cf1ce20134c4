"""mp_lock and mp_message_board shared by the workers of one run.

Four classes increment one counter file under mp_lock from whichever
workers run them; an isolated_serial class, which runs after everything
else, checks that no increment was lost and that the board saw them all.
"""

import os
import time
import unittest

from concurrent_runner import mp_lock, mp_message_board
from concurrent_runner.calls.sync import sync_dir

INCREMENTS = 25


def counter_path():
    return sync_dir() / "counter"


class Incrementer(unittest.TestCase):
    def test_increment(self):
        for _ in range(INCREMENTS):
            with mp_lock:
                path = counter_path()
                value = int(path.read_text()) if path.exists() else 0
                time.sleep(0.002)  # a window another worker would slip into
                path.write_text(str(value + 1))
        with mp_lock("board"):
            mp_message_board[type(self).__name__] = os.getpid()


class A(Incrementer):
    pass


class B(Incrementer):
    pass


class C(Incrementer):
    pass


class D(Incrementer):
    pass


del Incrementer  # only its subclasses are tests


class ZCheck(unittest.TestCase):
    mp_group = ("check", "isolated_serial")

    def test_nothing_was_lost(self):
        self.assertEqual(int(counter_path().read_text()), 4 * INCREMENTS)
        pids = {name: mp_message_board[name] for name in "ABCD"}
        if os.environ.get("CONCURRENT_RUNNER_WORKER"):
            # Several workers really took part.
            self.assertGreater(len(set(pids.values())), 1, pids)
