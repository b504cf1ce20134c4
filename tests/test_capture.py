"""concurrent_runner.parallel.capture: output caught at the file-descriptor
level, on descriptors made for each test (never this process's fd 1 and 2)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from concurrent_runner.parallel.capture import (
    Capture,
    FdCapture,
    adopt_stdio,
    flush_stdio,
    stdio_settings,
)


class FdCase(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def log(self, name: str = "log", content: bytes = b"") -> tuple[Path, int]:
        """A write-only file, as a worker's log is, and a descriptor on it."""
        path = self.tmp / name
        path.write_bytes(content)
        fd = os.open(path, os.O_WRONLY)
        os.lseek(fd, 0, os.SEEK_END)
        self.addCleanup(os.close, fd)
        return path, fd


class TemporaryFileTests(FdCase):
    def test_every_writer_of_the_descriptor_is_caught(self) -> None:
        path, fd = self.log()
        capture = FdCapture(fd)
        self.addCleanup(capture.close)
        os.write(fd, b"os.write\n")
        subprocess.run(
            [sys.executable, "-c", f"import os; os.write({fd}, b'child\\n')"],
            pass_fds=(fd,),
            check=True,
        )
        text = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8")
        text.write("text \u00e9\n")
        text.flush()
        self.assertEqual(capture.snap(), b"os.write\nchild\ntext \xc3\xa9\n")
        self.assertEqual(path.read_bytes(), b"")  # not where fd pointed

    def test_each_snap_holds_what_came_since_the_last(self) -> None:
        _path, fd = self.log()
        capture = FdCapture(fd)
        self.addCleanup(capture.close)
        os.write(fd, b"one\n")
        self.assertEqual(capture.snap(), b"one\n")
        self.assertEqual(capture.snap(), b"")
        os.write(fd, b"two\n")
        self.assertEqual(capture.snap(), b"two\n")

    def test_bytes_as_they_are(self) -> None:
        _path, fd = self.log()
        capture = FdCapture(fd)
        self.addCleanup(capture.close)
        data = bytes(range(256)) * 1000
        os.write(fd, data)
        self.assertEqual(capture.snap(), data)

    def test_close_points_the_descriptor_back(self) -> None:
        path, fd = self.log(content=b"before\n")
        capture = FdCapture(fd)
        os.write(fd, b"caught\n")
        capture.close()
        os.write(fd, b"after\n")
        self.assertEqual(path.read_bytes(), b"before\nafter\n")

    def test_a_descriptor_a_test_moved_is_left_where_the_test_put_it(self) -> None:
        _path, fd = self.log()
        capture = FdCapture(fd)
        self.addCleanup(capture.close)
        elsewhere, elsewhere_fd = self.log("elsewhere")
        os.dup2(elsewhere_fd, fd)
        os.write(fd, b"moved\n")
        self.assertEqual(capture.snap(), b"")
        self.assertEqual(elsewhere.read_bytes(), b"moved\n")


class InPlaceTests(FdCase):
    """A regular file (the worker's log) keeps what it had and what a
    crash writes after the last snap; a snap takes only the new part."""

    def test_the_file_keeps_what_came_before(self) -> None:
        path, fd = self.log(content=b"startup\n")
        capture = FdCapture(fd, in_place=True)
        self.addCleanup(capture.close)
        os.write(fd, b"test one\n")
        self.assertEqual(path.read_bytes(), b"startup\ntest one\n")
        self.assertEqual(capture.snap(), b"test one\n")
        self.assertEqual(path.read_bytes(), b"startup\n")
        os.write(fd, b"last words\n")
        # No hole where the snapped part was.
        self.assertEqual(path.read_bytes(), b"startup\nlast words\n")
        self.assertEqual(capture.snap(), b"last words\n")

    def test_a_write_only_descriptor_is_read_back(self) -> None:
        path, fd = self.log()
        capture = FdCapture(fd, in_place=True)
        self.addCleanup(capture.close)
        os.write(fd, b"x" * 100_000)
        self.assertEqual(capture.snap(), b"x" * 100_000)
        self.assertEqual(path.read_bytes(), b"")

    def test_not_a_regular_file_gets_a_temporary_file(self) -> None:
        reading, writing = os.pipe()
        self.addCleanup(os.close, reading)
        self.addCleanup(os.close, writing)
        os.set_blocking(reading, False)
        capture = FdCapture(writing, in_place=True)
        self.addCleanup(capture.close)
        os.write(writing, b"to the pipe?\n")
        self.assertEqual(capture.snap(), b"to the pipe?\n")
        with self.assertRaises(BlockingIOError):
            os.read(reading, 100)  # nothing reached the pipe


class CaptureTests(FdCase):
    def test_what_python_holds_is_flushed_first(self) -> None:
        _out_path, out_fd = self.log("out")
        _err_path, err_fd = self.log("err")
        capture = Capture(out_fd, err_fd)
        self.addCleanup(capture.close)
        # Block-buffered, as a worker's stdout is when it is a file.
        stdout = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(out_fd, "w", closefd=False)), encoding="utf-8"
        )
        with mock.patch.object(sys, "stdout", stdout):
            stdout.write("held by Python\n")
            os.write(err_fd, b"on stderr\n")
            self.assertEqual(capture.snap(), (b"held by Python\n", b"on stderr\n"))

    def test_a_closed_stream_is_left_alone(self) -> None:
        closed = io.StringIO()
        closed.close()
        with mock.patch.object(sys, "stdout", closed):
            flush_stdio()  # no ValueError


class AdoptStdioTests(unittest.TestCase):
    settings = {
        "stdout": {"encoding": "utf-8", "errors": "strict", "line_buffering": True},
        "stderr": {
            "encoding": "utf-8",
            "errors": "backslashreplace",
            "line_buffering": True,
        },
    }

    def test_a_stand_in_becomes_a_real_file_over_its_descriptor(self) -> None:
        with (
            mock.patch.object(sys, "stdout", io.StringIO()),
            mock.patch.object(sys, "stderr", io.StringIO()),
        ):
            adopt_stdio(self.settings)
            stdout, stderr = sys.stdout, sys.stderr
        self.assertIsInstance(stdout, io.TextIOWrapper)
        self.assertEqual(stdout.fileno(), 1)
        self.assertEqual(stderr.fileno(), 2)
        self.assertEqual((stdout.encoding, stdout.errors), ("utf-8", "strict"))
        self.assertTrue(stdout.line_buffering)
        self.assertEqual(stderr.errors, "backslashreplace")
        self.assertTrue(hasattr(stdout, "buffer"))

    def test_a_real_file_is_kept_and_set_up_as_the_parents(self) -> None:
        # As a fresh worker's stdout: a file, so block-buffered.
        own = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace"
        )
        with mock.patch.object(sys, "stdout", own):
            adopt_stdio({"stdout": self.settings["stdout"]})
            self.assertIs(sys.stdout, own)
        self.assertTrue(own.line_buffering)
        self.assertEqual(own.errors, "strict")

    def test_settings_say_what_the_streams_do(self) -> None:
        stream = io.TextIOWrapper(
            io.BytesIO(), encoding="latin-1", errors="surrogateescape"
        )
        with mock.patch.object(sys, "stdout", stream):
            settings = stdio_settings()
        self.assertEqual(
            settings["stdout"],
            {
                "encoding": "latin-1",
                "errors": "surrogateescape",
                "line_buffering": False,
            },
        )
        self.assertEqual(set(settings), {"stdout", "stderr"})
