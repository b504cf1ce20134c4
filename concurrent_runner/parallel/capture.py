"""What a worker's tests write to file descriptors 1 and 2, caught per test.

The child side only: imports nothing from the parent side. As pytest's
``capfd`` does, output is caught where it lands, at the file-descriptor
level, so ``sys.stdout`` and ``sys.stderr`` stay real files over fd 1 and 2
(with ``buffer`` and ``fileno()``, usable by ``faulthandler`` and by a
subprocess), and what never goes through them (``os.write``, a subprocess,
a logging handler made at start-up) is caught as well. ``Capture.snap()``
returns what was written since the last snap; the worker snaps at the edges
of each test.

fd 1 is pointed at an anonymous temporary file. fd 2 stays where it is when
that is a regular file (the worker's log, which the parent shows when a
worker dies, so that a crash's last words still reach it) and is read from
where it ended when capture began; otherwise it too gets a temporary file.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import locale
import os
import stat
import sys
import tempfile
from typing import Any, TextIO


class FdCapture:
    """Everything written to ``fd`` from now on, taken by ``snap``.

    ``in_place``: ``fd`` is a regular file; keep writing there, and hand out
    (and cut off again) only what comes after its present end. Where the
    file cannot be read back (opened write-only, and no path to reopen it
    by), ``fd`` gets a temporary file instead.
    """

    def __init__(self, fd: int, *, in_place: bool = False) -> None:
        self.fd = fd
        self._saved = os.dup(fd)  # where fd pointed, for close()
        reader = _reader_of(fd) if in_place else None
        if reader is not None:
            self._file = os.dup(fd)  # shares fd's offset
            self._reader = reader
            self._start = os.lseek(self._file, 0, os.SEEK_END)
        else:
            with tempfile.TemporaryFile(buffering=0) as temporary:
                self._file = os.dup(temporary.fileno())
            self._reader = os.dup(self._file)
            self._start = 0
            # A test may move or close fd 1 afterwards; then its output goes
            # where the test sent it, as it would in a serial run.
            os.dup2(self._file, fd)

    def snap(self) -> bytes:
        """What was written since capture began or the last snap."""
        size = os.fstat(self._file).st_size
        if size <= self._start:
            return b""
        data = _read_at(self._reader, self._start, size - self._start)
        os.ftruncate(self._file, self._start)
        # Shared with fd (one open file): the next write lands at the start.
        os.lseek(self._file, self._start, os.SEEK_SET)
        return data

    def close(self) -> None:
        """Point ``fd`` back where it was."""
        os.dup2(self._saved, self.fd)
        for own in (self._saved, self._file, self._reader):
            os.close(own)


class Capture:
    """This process's fd 1 and fd 2 (or the two given), caught from now on."""

    def __init__(self, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        # Also flushed while --buffer's buffers stand in for them.
        self._streams = (sys.stdout, sys.stderr)
        flush_stdio()
        self.stdout = FdCapture(stdout_fd)
        self.stderr = FdCapture(stderr_fd, in_place=_regular_file(stderr_fd))

    def snap(self) -> tuple[bytes, bytes]:
        """What reached fd 1 and fd 2 since the last snap."""
        flush_stdio(*self._streams)
        return self.stdout.snap(), self.stderr.snap()

    def close(self) -> None:
        flush_stdio(*self._streams)
        self.stdout.close()
        self.stderr.close()


def flush_stdio(*more: TextIO | None) -> None:
    """Push what Python holds for fd 1 and 2 (in ``sys.stdout``,
    ``sys.stderr``, their originals, and ``more``) down to them. A stream
    that a test closed, or that cannot be flushed, is left as it is."""
    standard = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    streams = {id(s): s for s in (*standard, *more)}
    for stream in streams.values():
        if stream is not None and not getattr(stream, "closed", True):
            with contextlib.suppress(Exception):
                stream.flush()


def _reader_of(fd: int) -> int | None:
    """A descriptor to read back the regular file open as ``fd``."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_WRONLY:
            return os.dup(fd)
        # A log opened "wb": open the same file again, for reading.
        path: str | bytes
        if os.path.isdir("/proc/self/fd"):
            path = f"/proc/self/fd/{fd}"
        elif hasattr(fcntl, "F_GETPATH"):  # macOS
            path = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).rstrip(b"\0")
        else:
            return None
        reader = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    if os.fstat(reader)[1:3] != os.fstat(fd)[1:3]:  # (st_ino, st_dev)
        os.close(reader)
        return None
    return reader


def _regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _read_at(fd: int, offset: int, length: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


# -- sys.stdout and sys.stderr as the parent has them ------------------------


def stdio_settings() -> dict[str, dict[str, Any]]:
    """How this process's ``sys.stdout`` and ``sys.stderr`` encode and
    buffer: what a worker's should do too (see ``adopt_stdio``)."""
    fallback = locale.getpreferredencoding(False)
    return {
        name: {
            "encoding": getattr(stream, "encoding", None) or fallback,
            "errors": getattr(stream, "errors", None) or "strict",
            "line_buffering": bool(getattr(stream, "line_buffering", False)),
        }
        for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr))
    }


def adopt_stdio(settings: dict[str, dict[str, Any]]) -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` real text files over fd 1 and
    2 that encode and buffer as ``settings`` (the parent's) say.

    A fresh worker's stdout is a file, so Python made it block-buffered,
    where the parent's may be a terminal's (line-buffered); a forked worker
    has the parent's own objects. A stream that is not a text file over its
    fd (replaced by the code that started the run) is replaced by one.
    """
    for name, fd in (("stdout", 1), ("stderr", 2)):
        wanted = settings.get(name, {})
        stream = getattr(sys, name)
        if not _text_file_over(stream, fd):
            stream = io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False),
                encoding=wanted.get("encoding"),
                errors=wanted.get("errors"),
                line_buffering=bool(wanted.get("line_buffering")),
            )
            setattr(sys, name, stream)
            continue
        changes = {
            key: value
            for key, value in wanted.items()
            if getattr(stream, key, value) != value
        }
        if changes:
            with contextlib.suppress(Exception):
                stream.reconfigure(**changes)


def _text_file_over(stream: TextIO | None, fd: int) -> bool:
    if not isinstance(stream, io.TextIOWrapper) or stream.closed:
        return False
    try:
        return stream.fileno() == fd
    except (OSError, ValueError):
        return False
