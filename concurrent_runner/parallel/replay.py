"""Replay what workers report into one ordinary unittest result.

Pure functions of (result, test, record): no processes here, so they are
tested with a plain ``TextTestResult``. Each test is replayed as one block
(start, its output, its outcomes, stop), so ``-v 2`` lines and printed output
never interleave between tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import time
import unittest
from collections.abc import Iterator
from typing import Any

from django.test.runner import DebugSQLTextTestResult

from . import protocol as p


def _subtest(test: unittest.TestCase, outcome: p.SubTestResult) -> Any:
    message = outcome.message
    if message is None:
        message = unittest.case._subtest_msg_sentinel  # type: ignore[attr-defined]
    return unittest.case._SubTest(test, message, outcome.params)  # type: ignore[attr-defined]


class WorkerTracebacks:
    """Mixed into a parallel run's result: tracebacks that came from a
    worker are shown without Python 3.11+'s ``^^^^`` markers, which would be
    wrong there (tblib rebuilds each frame from a stub of its own, whose
    column positions the markers would show)."""

    _replaying = False

    def _exc_info_to_string(self, err: Any, test: Any) -> str:
        text: str = super()._exc_info_to_string(err, test)  # type: ignore[misc]
        if not self._replaying:
            return text
        return "".join(
            line for line in text.splitlines(True) if not _MARKERS.match(line)
        )


#: A line of markers under a traceback's source line (and only that).
_MARKERS = re.compile(r"^ +[\^~]+ *\n?$")


def replay_outcome(result: unittest.TestResult, test: Any, outcome: p.Outcome) -> None:
    # typeshed wants a traceback in every exc_info; unittest itself accepts
    # None, which is what a stand-in for an unpicklable error carries.
    target: Any = result
    replaying = getattr(result, "_replaying", None)
    if replaying is not None:
        target._replaying = True
    try:
        _add(target, test, outcome)
    finally:
        if replaying is not None:
            target._replaying = False


def _add(target: Any, test: Any, outcome: p.Outcome) -> None:
    match outcome:
        case p.Success():
            target.addSuccess(test)
        case p.Failure(err=err):
            target.addFailure(test, err)
        case p.Error(err=err):
            target.addError(test, err)
        case p.Skip(reason=reason, subtest=p.SubTestResult() as subtest):
            target.addSkip(_subtest(test, subtest), reason)
        case p.Skip(reason=reason):
            target.addSkip(test, reason)
        case p.ExpectedFailure(err=err):
            target.addExpectedFailure(test, err)
        case p.UnexpectedSuccess():
            target.addUnexpectedSuccess(test)
        case p.SubTestResult(err=err):
            target.addSubTest(test, _subtest(test, outcome), err)
        case _:
            raise TypeError(f"unknown outcome {outcome!r}")


def _debug_sql_stream(result: unittest.TestResult) -> Any:
    """Where a ``--debug-sql`` result collects the running test's SQL."""
    stream = getattr(result, "debug_sql_stream", None)  # Django < 6.0
    if stream is None and isinstance(result, DebugSQLTextTestResult):
        # Django >= 6.0 reads it back from its log handler's stream.
        stream = getattr(getattr(result, "handler", None), "stream", None)
    return stream


def replay_test(result: unittest.TestResult, test: Any, record: p.TestRecord) -> None:
    # stdout is block-buffered in a log, stderr (the result's stream) is not:
    # flush at the edges of each test so that, in a file holding both, what
    # a test printed stays next to its own status line.
    _flush(sys.stdout)
    # What reached the worker's fd 1 and 2 goes to these, the real streams,
    # also with --buffer (serially, unittest's buffers never see it).
    stdout, stderr = sys.stdout, sys.stderr
    if record.started:
        result.startTest(test)
    # Written after startTest: after the test's name at -v 2, and, with
    # --buffer, into the result's buffers, exactly as if the test had
    # printed it here.
    echo(result, stdout, record.stdout)
    echo(result, stderr, record.stderr)
    _echo_text(result, sys.stdout, record.buffered_stdout)
    _echo_text(result, sys.stderr, record.buffered_stderr)
    sql_stream = _debug_sql_stream(result)
    if record.sql and sql_stream is not None:
        sql_stream.write(record.sql)
    for outcome in record.outcomes:
        replay_outcome(result, test, outcome)
    if record.duration is not None and hasattr(result, "addDuration"):
        result.addDuration(test, record.duration)
    # Reporters that want the worker's duration and output (--junit-xml).
    hook = getattr(result, "replayed_record", None)
    if hook is not None:
        hook(test, record)
    result.stopTest(test)


def at_line_start(result: Any) -> None:
    """Tell ``TextTestResult`` that its stream is at the start of a line, so
    that its next status writes the test's name first. Every replayed test
    ends its line, but it does not always note it (3.11's
    addUnexpectedSuccess, 3.12's addExpectedFailure)."""
    if getattr(result, "_newline", None) is False:
        result._newline = True


def replay_output(result: unittest.TestResult, stdout: bytes, stderr: bytes) -> None:
    """What a unit wrote outside any test (``UnitOutput``), shown as it
    comes, as a serial run shows it."""
    echo(result, sys.stdout, stdout)
    echo(result, sys.stderr, stderr)


# -- writing what workers caught, never failing the run ------------------------

#: Seconds a write may wait for a full non-blocking stdout to take more.
WRITE_TIMEOUT = 30.0


def echo(result: unittest.TestResult, stream: Any, data: bytes) -> None:
    """Write bytes a worker caught to ``stream``, as a test writing them
    there itself would have. Never raises: a stream that cannot take them
    (a closed pipe under ``| head``, a full non-blocking pipe past
    ``WRITE_TIMEOUT``) is noted once on stderr and the run goes on."""
    if not data:
        return
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text stream only (put there by the caller)
        _echo_text(result, stream, decode(data))
        return
    # Once a stream has failed, it gets no more waiting: a full pipe that
    # nobody reads would otherwise cost WRITE_TIMEOUT for every test.
    timeout = 0.0 if _stream_name(stream) in _unwritable(result) else WRITE_TIMEOUT
    try:
        _write_all(stream, binary, data, timeout)
    except Exception as exc:
        _note_unwritable(result, stream, exc)


def decode(data: bytes) -> str:
    """Bytes a worker wrote, as the text a test printed: a worker's streams
    encode as this process's standard streams do (``capture.adopt_stdio``);
    bytes that are not text in that encoding come back as the lone
    surrogates that a test printing them would have printed."""
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    try:
        return data.decode(encoding, "surrogateescape")
    except LookupError:
        return data.decode("utf-8", "surrogateescape")


def _echo_text(result: unittest.TestResult, stream: Any, text: str) -> None:
    if not text:
        return
    try:
        try:
            stream.write(text)
        except UnicodeEncodeError:
            # What the stream cannot encode (a lone surrogate under strict
            # errors), escaped: the test that wrote it is over; its output
            # must not fail the run.
            encoding = getattr(stream, "encoding", None) or "utf-8"
            stream.write(
                text.encode(encoding, "backslashreplace").decode(encoding, "replace")
            )
        stream.flush()
    except Exception as exc:
        _note_unwritable(result, stream, exc)


def _write_all(stream: Any, binary: Any, data: bytes, timeout: float) -> None:
    """What ``stream`` holds, then ``data``, waiting (within WRITE_TIMEOUT)
    while a non-blocking stream is full.

    Straight to the file descriptor where there is one: bytes that cannot
    be written are then not left in Python's buffer, whose flush at exit
    would fail again and change the exit code (to 120).
    """
    deadline = time.monotonic() + timeout
    try:
        fd: int | None = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    _retry(stream.flush, fd, deadline)
    rest = memoryview(data)
    while rest:
        try:
            if fd is not None:
                rest = rest[os.write(fd, rest) :]
            else:
                binary.write(rest)
                rest = rest[len(rest) :]
        except BlockingIOError as exc:
            # Set by a buffered stream; os.write wrote nothing.
            rest = rest[getattr(exc, "characters_written", 0) :]
            _wait_writable(fd, deadline)
    if fd is None:
        _retry(binary.flush, fd, deadline)


def _retry(call: Any, fd: int | None, deadline: float) -> None:
    while True:
        try:
            call()
            return
        except BlockingIOError:
            _wait_writable(fd, deadline)


def _wait_writable(fd: int | None, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("it stayed full")
    if fd is None:
        time.sleep(min(remaining, 0.01))
    else:
        select.select([], [fd], [], min(remaining, 1.0))


def _flush(stream: Any) -> None:
    with contextlib.suppress(Exception):
        stream.flush()


def _unwritable(result: unittest.TestResult) -> set[str]:
    """The streams of this run that failed to take a test's output."""
    noted: set[str] = result.__dict__.setdefault("_unwritable_streams", set())
    return noted


def _stream_name(stream: Any) -> str:
    return str(getattr(stream, "name", None) or repr(stream))


def _note_unwritable(result: unittest.TestResult, stream: Any, exc: Exception) -> None:
    """Say once per stream and run that tests' output is being lost."""
    noted = _unwritable(result)
    name = _stream_name(stream)
    if name in noted:
        return
    noted.add(name)
    note = (
        f"Could not write a test's output to {name}: {exc!r}. The run goes "
        f"on; output that cannot be written is dropped.\n"
    )
    real = sys.stderr
    if real is getattr(result, "_stderr_buffer", None):  # --buffer, in a test
        real = getattr(result, "_original_stderr", sys.__stderr__)
    for target in (real, sys.__stderr__):
        if target is not None and target is not stream:
            with contextlib.suppress(Exception):
                target.write(note)
                target.flush()
                return


@contextlib.contextmanager
def _outside_a_test(result: unittest.TestResult) -> Iterator[None]:
    """Buffer output around a fixture's outcome, as unittest's suite does.

    With ``--buffer`` the result formats an error by reading
    ``sys.stdout.getvalue()``, which only its own buffer has.
    """
    # Else TextTestResult could print a bare status without the fixture's
    # description.
    at_line_start(result)
    buffered = hasattr(result, "_setupStdout") and hasattr(result, "_restoreStdout")
    if buffered:
        result._setupStdout()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if buffered:
            result._restoreStdout()  # type: ignore[attr-defined]


def replay_fixture(
    result: unittest.TestResult,
    description: str,
    outcome: p.Outcome,
    buffered_stdout: str = "",
    buffered_stderr: str = "",
) -> None:
    """A setUpClass/setUpModule error or skip, reported as unittest does."""
    holder = unittest.suite._ErrorHolder(description)  # type: ignore[attr-defined]
    with _outside_a_test(result):
        # With --buffer, what the fixture printed, for the report to show.
        _echo_text(result, sys.stdout, buffered_stdout)
        _echo_text(result, sys.stderr, buffered_stderr)
        replay_outcome(result, holder, outcome)


def replay_error(result: unittest.TestResult, test: Any, error: Exception) -> None:
    """An error of the parent's making for ``test`` (its worker died while
    it ran, or it could not be run there)."""
    result.startTest(test)
    result.addError(test, (type(error), error, error.__traceback__))  # type: ignore[arg-type]
    result.stopTest(test)


def replay_fixture_error(
    result: unittest.TestResult, description: str, error: Exception
) -> None:
    """An error of the parent's making for a class or module fixture, or a
    unit, reported as unittest reports a failed ``setUpClass``."""
    holder = unittest.suite._ErrorHolder(description)  # type: ignore[attr-defined]
    with _outside_a_test(result):
        result.addError(holder, (type(error), error, error.__traceback__))  # type: ignore[arg-type]
