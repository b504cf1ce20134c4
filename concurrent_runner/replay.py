"""Replay what workers report into one ordinary unittest result.

Pure functions of (result, test, record): no processes here, so they are
tested with a plain ``TextTestResult``. Each test is replayed as one block
(start, its output, its outcomes, stop), so ``-v 2`` lines and printed output
never interleave between tests.
"""

from __future__ import annotations

import sys
import unittest
from typing import Any

from . import protocol as p


class WorkerCrashed(Exception):
    """A worker process ended while running a test."""


def _subtest(test: unittest.TestCase, outcome: p.SubTestResult) -> Any:
    message = outcome.message
    if message is None:
        message = unittest.case._subtest_msg_sentinel  # type: ignore[attr-defined]
    return unittest.case._SubTest(test, message, outcome.params)  # type: ignore[attr-defined]


def replay_outcome(result: unittest.TestResult, test: Any, outcome: p.Outcome) -> None:
    match outcome:
        case p.Success():
            result.addSuccess(test)
        case p.Failure(err=err):
            result.addFailure(test, err)
        case p.Error(err=err):
            result.addError(test, err)
        case p.Skip(reason=reason):
            result.addSkip(test, reason)
        case p.ExpectedFailure(err=err):
            result.addExpectedFailure(test, err)
        case p.UnexpectedSuccess():
            result.addUnexpectedSuccess(test)
        case p.SubTestResult(err=err):
            result.addSubTest(test, _subtest(test, outcome), err)
        case _:
            raise TypeError(f"unknown outcome {outcome!r}")


def replay_test(result: unittest.TestResult, test: Any, record: p.TestRecord) -> None:
    result.startTest(test)
    # Written after startTest, so that with --buffer the result captures it
    # exactly as if the test had printed it here.
    if record.stdout:
        sys.stdout.write(record.stdout)
    if record.stderr:
        sys.stderr.write(record.stderr)
    sql_stream = getattr(result, "debug_sql_stream", None)
    if record.sql and sql_stream is not None:
        sql_stream.write(record.sql)
    for outcome in record.outcomes:
        replay_outcome(result, test, outcome)
    if record.duration is not None and hasattr(result, "addDuration"):
        result.addDuration(test, record.duration)
    result.stopTest(test)


def replay_fixture(result: unittest.TestResult, description: str, outcome: p.Outcome) -> None:
    """A setUpClass/setUpModule error or skip, reported as unittest does."""
    holder = unittest.suite._ErrorHolder(description)  # type: ignore[attr-defined]
    replay_outcome(result, holder, outcome)


def report_crash(result: unittest.TestResult, test: Any, how: str) -> None:
    """The test in flight when its worker died counts as an error."""
    error = WorkerCrashed(f"The worker running {test.id()} {how}.")
    result.startTest(test)
    result.addError(test, (WorkerCrashed, error, None))
    result.stopTest(test)


def report_unit_crash(result: unittest.TestResult, description: str, how: str) -> None:
    """A worker died between tests (in a fixture): an error for the unit."""
    error = WorkerCrashed(f"The worker {how}.")
    holder = unittest.suite._ErrorHolder(description)  # type: ignore[attr-defined]
    result.addError(holder, (WorkerCrashed, error, None))
