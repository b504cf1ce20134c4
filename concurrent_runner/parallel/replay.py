"""Replay what workers report into one ordinary unittest result.

Pure functions of (result, test, record): no processes here, so they are
tested with a plain ``TextTestResult``. Each test is replayed as one block
(start, its output, its outcomes, stop), so ``-v 2`` lines and printed output
never interleave between tests.
"""

from __future__ import annotations

import contextlib
import sys
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


def replay_outcome(result: unittest.TestResult, test: Any, outcome: p.Outcome) -> None:
    # typeshed wants a traceback in every exc_info; unittest itself accepts
    # None, which is what a stand-in for an unpicklable error carries.
    target: Any = result
    match outcome:
        case p.Success():
            target.addSuccess(test)
        case p.Failure(err=err):
            target.addFailure(test, err)
        case p.Error(err=err):
            target.addError(test, err)
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
    sys.stdout.flush()
    if record.started:
        result.startTest(test)
    # Written after startTest, so that with --buffer the result captures it
    # exactly as if the test had printed it here.
    if record.stdout:
        sys.stdout.write(record.stdout)
        sys.stdout.flush()
    if record.stderr:
        sys.stderr.write(record.stderr)
        sys.stderr.flush()
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
    result: unittest.TestResult, description: str, outcome: p.Outcome
) -> None:
    """A setUpClass/setUpModule error or skip, reported as unittest does."""
    holder = unittest.suite._ErrorHolder(description)  # type: ignore[attr-defined]
    with _outside_a_test(result):
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
