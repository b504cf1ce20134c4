"""Work left for the test process's exit (concurrent_runner.exiting): run
in one process, so that the test runs in the process whose exit is seen."""

import atexit
import os
import unittest
import weakref


class InACycle:
    def __init__(self):
        self.me = self

    def __del__(self, write=os.write):  # module globals may be gone by then
        write(1, b"a cycle was collected at exit\n")


class Plain:
    def __del__(self, write=os.write):
        write(1, b"a plain object was freed at exit\n")


class ExitTests(unittest.TestCase):
    def test_leaves_work_for_the_exit(self):
        global CYCLE, PLAIN
        CYCLE, PLAIN = InACycle(), Plain()
        atexit.register(print, "an atexit handler ran")
        weakref.finalize(PLAIN, print, "a weakref.finalize callback ran")
        # Block-buffered (stdout is a pipe): seen only if flushed at exit.
        print("printed by the test")
