"""Tests that write to fd 1 and 2 every way a test can: each must pass, and
show its lines, as it does serially and under Django's --parallel.

Every line written starts with ``<<`` so that runs can be compared.
"""

import faulthandler
import logging
import os
import subprocess
import sys
import unittest

# A handler made at start-up holds the stderr of that moment, as one made by
# a LOGGING setting does.
logger = logging.getLogger("stdio.tests")
logger.addHandler(logging.StreamHandler())
logger.setLevel(logging.INFO)
logger.propagate = False

print("<<stdio.tests imported>>")


def setUpModule():
    print("<<setUpModule>>")


def tearDownModule():
    print("<<tearDownModule>>")


class Streams(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        print("<<setUpClass>>")
        os.write(2, b"<<setUpClass on fd 2>>\n")

    @classmethod
    def tearDownClass(cls):
        print("<<tearDownClass>>")

    def test_print(self):
        print("<<print>>")
        print("<<print to stderr>>", file=sys.stderr)

    def test_stdout_buffer(self):
        sys.stdout.buffer.write(b"<<sys.stdout.buffer>>\n")
        sys.stdout.flush()

    def test_fileno(self):
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), b"<<sys.stdout.fileno()>>\n")

    def test_os_write(self):
        os.write(1, b"<<os.write(1)>>\n")
        os.write(2, b"<<os.write(2)>>\n")

    def test_faulthandler(self):
        faulthandler.enable()
        self.assertTrue(faulthandler.is_enabled())
        print("<<faulthandler enabled>>")

    def test_subprocess(self):
        sys.stdout.flush()
        # Not written as one string here: where this call fails (--buffer),
        # Python 3.13 shows the whole call in the traceback.
        subprocess.run(
            [sys.executable, "-c", "print('<' * 2 + 'from a subprocess' + '>' * 2)"],
            stdout=sys.stdout,
            check=True,
        )

    def test_logging(self):
        logger.info("<<logged by a handler made at import>>")

    def test_lone_surrogate(self):
        # A file name that is not valid UTF-8, as os.listdir gives it.
        print("<<lone surrogate: \udcff>>")


class Failing(unittest.TestCase):
    def test_prints_and_fails(self):
        print("<<printed by a failing test>>")
        os.write(2, b"<<fd 2 of a failing test>>\n")
        self.fail("<<as planned>>")
