"""What a worker's tests write, caught at the file-descriptor level and sent
with the test (or unit) that wrote it; in-process, with ``sys.stdout`` and
``sys.stderr`` on files made for each test (never this process's own)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Any
from unittest import mock

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.capture import Capture
from concurrent_runner.parallel.worker import run_unit

from .test_worker_result import FakeConnection, make_class


class WorkerOutputCase(unittest.TestCase):
    """A worker's stdout and stderr: files over their own descriptors (as
    block-buffered and as strict as the test says), caught by a Capture."""

    errors = "surrogateescape"

    def setUp(self) -> None:
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp)
        self.fds = []
        streams = []
        for name in ("out", "err"):
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT)
            self.addCleanup(os.close, fd)
            self.fds.append(fd)
            streams.append(
                io.TextIOWrapper(
                    io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
                    encoding="utf-8",
                    errors=self.errors,
                )
            )
        self.out_fd, self.err_fd = self.fds
        for name, stream in zip(("stdout", "stderr"), streams, strict=True):
            patcher = mock.patch.object(sys, name, stream)
            patcher.start()
            self.addCleanup(patcher.stop)
        self.capture = Capture(self.out_fd, self.err_fd)
        self.addCleanup(self.capture.close)

    def run_unit(self, tests: list[Any], buffer: bool = False) -> list[Any]:
        conn = FakeConnection()
        more = run_unit(
            conn,  # type: ignore[arg-type]
            p.RunUnit(0, list(range(len(tests)))),
            tests,
            failfast=False,
            buffer=buffer,
            capture=self.capture,
        )
        self.assertTrue(more)
        self.assertIsInstance(conn.sent[-1], p.UnitDone)
        return conn.sent

    @staticmethod
    def records(sent: list[Any]) -> list[p.TestRecord]:
        return [m.record for m in sent if isinstance(m, p.TestDone)]


class TestOutputTests(WorkerOutputCase):
    def test_every_way_of_writing_travels_with_the_test_as_bytes(self) -> None:
        def test_writes(self: Any) -> None:
            print("printed", flush=True)
            sys.stdout.buffer.write(b"not UTF-8: \xff\n")
            sys.stdout.flush()
            os.write(sys.stdout.fileno(), b"through fileno()\n")
            subprocess.run(
                [sys.executable, "-c", "print('from a child')"],
                stdout=sys.stdout,
                check=True,
            )
            print("<\udcff>")  # a lone surrogate, as os.listdir may give
            sys.stderr.write("warned\n")

        def test_quiet(self: Any) -> None:
            pass

        cls = make_class("Writes", {"test_writes": test_writes, "test_q": test_quiet})
        writes, quiet = self.records(self.run_unit([cls("test_writes"), cls("test_q")]))
        self.assertEqual(writes.outcomes, [p.Success()])
        self.assertEqual(
            writes.stdout,
            b"printed\nnot UTF-8: \xff\nthrough fileno()\nfrom a child\n<\xff>\n",
        )
        self.assertEqual(writes.stderr, b"warned\n")
        self.assertEqual((quiet.stdout, quiet.stderr), (b"", b""))

    def test_what_fixtures_write_is_sent_for_the_unit(self) -> None:
        def set_up_class(cls: type) -> None:
            print("setUpClass")

        def tear_down_class(cls: type) -> None:
            sys.stderr.write("tearDownClass\n")

        def test_it(self: Any) -> None:
            print("the test")

        cls = make_class(
            "Fixtures",
            {
                "setUpClass": classmethod(set_up_class),
                "tearDownClass": classmethod(tear_down_class),
                "test_it": test_it,
            },
        )
        sent = self.run_unit([cls("test_it")])
        self.assertEqual(
            [type(m).__name__ for m in sent],
            [
                "FixtureStarted",  # setUpClass
                "UnitOutput",
                "TestStarted",
                "TestDone",
                "FixtureStarted",  # tearDownClass
                "UnitOutput",
                "UnitDone",
            ],
        )
        before, after = (m for m in sent if isinstance(m, p.UnitOutput))
        self.assertEqual((before.stdout, before.stderr), (b"setUpClass\n", b""))
        self.assertEqual((after.stdout, after.stderr), (b"", b"tearDownClass\n"))
        [record] = self.records(sent)
        self.assertEqual(record.stdout, b"the test\n")

    def test_a_fixture_error_follows_what_the_fixture_wrote(self) -> None:
        def set_up_class(cls: type) -> None:
            print("about to fail")
            raise RuntimeError("setUpClass failed")

        cls = make_class(
            "Broken",
            {"setUpClass": classmethod(set_up_class), "test_it": lambda self: None},
        )
        sent = self.run_unit([cls("test_it")])
        self.assertEqual(
            [type(m).__name__ for m in sent],
            ["FixtureStarted", "UnitOutput", "FixtureOutcome", "UnitDone"],
        )
        self.assertEqual(sent[1].stdout, b"about to fail\n")

    def test_a_test_that_closes_stdout_costs_what_it_does_serially(self) -> None:
        def test_1_closes(self: Any) -> None:
            sys.stdout.close()

        def test_2_prints(self: Any) -> None:
            print("after the close")

        def test_3_writes_to_stderr(self: Any) -> None:
            sys.stderr.write("stderr still works\n")

        cls = make_class(
            "Closing",
            {
                "test_1": test_1_closes,
                "test_2": test_2_prints,
                "test_3": test_3_writes_to_stderr,
            },
        )
        first, second, third = self.records(
            self.run_unit([cls("test_1"), cls("test_2"), cls("test_3")])
        )
        self.assertEqual(first.outcomes, [p.Success()])
        [error] = second.outcomes
        self.assertIsInstance(error, p.Error)
        self.assertIs(error.err[0], ValueError)  # I/O operation on closed file
        self.assertEqual(third.outcomes, [p.Success()])
        self.assertEqual(third.stderr, b"stderr still works\n")


class StrictStdoutTests(WorkerOutputCase):
    """PYTHONIOENCODING=utf-8:strict (the parent's, copied by the worker)."""

    errors = "strict"

    def test_a_lone_surrogate_is_the_tests_error_as_serially(self) -> None:
        def test_it(self: Any) -> None:
            print("<\udcff>")

        cls = make_class("Surrogate", {"test_it": test_it})
        [record] = self.records(self.run_unit([cls("test_it")]))
        [error] = record.outcomes
        self.assertIsInstance(error, p.Error)
        self.assertIs(error.err[0], UnicodeEncodeError)
        # Whole after the trip through the pipe (tblib alone loses it).
        self.assertIn("surrogates not allowed", str(error.err[1]))


class BufferTests(WorkerOutputCase):
    """--buffer: unittest's buffers stand in for sys.stdout and sys.stderr
    in tests and fixtures, as serially; what they held travels as text, and
    what reaches the descriptors otherwise as bytes."""

    def test_buffered_and_direct_output_travel_apart(self) -> None:
        out_fd = self.out_fd

        def test_fails(self: Any) -> None:
            print("held by the buffer")
            sys.stderr.write("held too\n")
            os.write(out_fd, b"straight to fd 1\n")
            self.fail("to see the output")

        cls = make_class("Buffered", {"test_fails": test_fails})
        [record] = self.records(self.run_unit([cls("test_fails")], buffer=True))
        self.assertEqual(record.buffered_stdout, "held by the buffer\n")
        self.assertEqual(record.buffered_stderr, "held too\n")
        # Not mirrored by the worker: the parent shows it, once.
        self.assertEqual(record.stdout, b"straight to fd 1\n")
        self.assertEqual(record.stderr, b"")

    def test_a_fixture_error_carries_what_the_buffer_held(self) -> None:
        def set_up_class(cls: type) -> None:
            print("in setUpClass")
            raise RuntimeError("no")

        cls = make_class(
            "Broken",
            {"setUpClass": classmethod(set_up_class), "test_it": lambda self: None},
        )
        sent = self.run_unit([cls("test_it")], buffer=True)
        self.assertFalse([m for m in sent if isinstance(m, p.UnitOutput)])
        [fixture] = [m for m in sent if isinstance(m, p.FixtureOutcome)]
        self.assertEqual(fixture.buffered_stdout, "in setUpClass\n")

    def test_a_test_that_closes_the_buffer_does_not_end_the_worker(self) -> None:
        def test_1_closes(self: Any) -> None:
            sys.stdout.close()

        def test_2_prints(self: Any) -> None:
            print("in a new buffer")
            self.fail("to keep it")

        cls = make_class("Closing", {"test_1": test_1_closes, "test_2": test_2_prints})
        first, second = self.records(
            self.run_unit([cls("test_1"), cls("test_2")], buffer=True)
        )
        self.assertEqual(first.outcomes, [p.Success()])
        self.assertEqual(second.buffered_stdout, "in a new buffer\n")
