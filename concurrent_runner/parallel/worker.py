"""The child side: a ``manage.py test`` process that runs units it is sent.

A worker is forked from the run's fork server (``forking``), which already
holds the suite, or is the very command the user ran, started again with
``WORKER_ENV`` set: ``Runner.run_tests`` sees it, builds the same suite and
calls ``serve``. The worker says hello with its test ids, takes its
databases (a clone the parent made, or on the last slot the test databases
themselves; it never creates or destroys one), then
runs units until told to stop or until the parent goes away. This module
imports nothing from the parent side.
"""

from __future__ import annotations

import faulthandler
import io
import json
import logging
import os
import signal
import sys
import time
import unittest
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from django.conf import settings
from django.db import connections

from . import protocol as p


@dataclass(frozen=True)
class WorkerSpec:
    """What the parent puts in the worker's environment."""

    fd: int
    slot: int
    run: int  # which run_tests() call of the process is the parallel one
    shuffle_seed: int | None
    stack_file: str  # where faulthandler writes the stacks on SIGUSR1

    def dumps(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_environ(cls) -> WorkerSpec | None:
        raw = os.environ.get(p.WORKER_ENV)
        return cls(**json.loads(raw)) if raw else None


def _subtest_message(subtest: Any) -> Any:
    message = getattr(subtest, "_message", None)
    sentinel = unittest.case._subtest_msg_sentinel  # type: ignore[attr-defined]
    return None if message is sentinel else message


class WorkerResult(unittest.TestResult):
    """Records each test as one ``TestRecord`` and sends it when it stops.

    Output is always buffered here (``buffer``), so that what a test prints
    travels with its record and the parent can show it in one block.
    """

    def __init__(
        self,
        conn: Connection,
        unit: int,
        tests: Sequence[Any],
        index: dict[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.buffer = True
        self._conn = conn
        self._unit = unit
        # id(test) -> its index; made once per worker (``test_index``), not
        # once per unit, which would cost the size of the suite every time.
        self._index = test_index(tests) if index is None else index
        self._record: p.TestRecord | None = None
        self._sql: io.StringIO | None = None
        self._sql_handler: logging.Handler | None = None
        self._started = time.monotonic()
        self._class_starts: dict[str, float] = {}
        self.current_class = ""
        self.last_error_was_interrupt = False

    # -- bookkeeping ---------------------------------------------------

    def startTest(self, test: Any) -> None:
        label = f"{type(test).__module__}.{type(test).__qualname__}"
        self._class_starts.setdefault(label, time.monotonic())
        self.current_class = label
        self.last_error_was_interrupt = False
        index = self._index[id(test)]
        self._conn.send(p.TestStarted(self._unit, index))
        self._record = p.TestRecord(index)
        self._test_started = time.monotonic()
        if connections_debug_sql():
            self._sql = io.StringIO()
            self._sql_handler = logging.StreamHandler(self._sql)
            logging.getLogger("django.db.backends").addHandler(self._sql_handler)
        super().startTest(test)

    def stopTest(self, test: Any) -> None:
        record = self._record
        if record is None:  # stopped without starting: skipped (3.12+)
            record = self._record = p.TestRecord(self._index[id(test)], started=False)
        escaping = sys.exc_info()
        if escaping[0] is not None and issubclass(escaping[0], KeyboardInterrupt):
            # unittest lets KeyboardInterrupt out of the test and calls
            # stopTest on the way; it is this test's error.
            record.outcomes.append(p.Error(self._portable(escaping, test)))
            self.last_error_was_interrupt = True
        # unittest's buffers (TestResult._setupStdout) hold what the test printed.
        stdout = getattr(self, "_stdout_buffer", None)
        stderr = getattr(self, "_stderr_buffer", None)
        record.stdout = stdout.getvalue() if stdout is not None else ""
        record.stderr = stderr.getvalue() if stderr is not None else ""
        # Nothing to mirror to the worker's own (unseen) stdout.
        self._mirrorOutput = False
        super().stopTest(test)
        if record.duration is None:  # addDuration exists from Python 3.12
            record.duration = time.monotonic() - self._test_started
        if self._sql_handler is not None:
            logging.getLogger("django.db.backends").removeHandler(self._sql_handler)
            record.sql = self._sql.getvalue() if self._sql else ""
            self._sql_handler = self._sql = None
        self._conn.send(p.TestDone(self._unit, record))
        self._record = None
        # Between two tests is where a Stop (failfast elsewhere) takes effect.
        if self._conn.poll():
            message = self._conn.recv()
            if isinstance(message, p.Stop):
                self.stop()

    def class_durations(self) -> dict[str, float]:
        end = time.monotonic()
        starts = sorted(self._class_starts.items(), key=lambda kv: kv[1])
        durations = {}
        for i, (label, start) in enumerate(starts):
            # The first class also owns the unit's start-up (its setUpClass).
            begin = self._started if i == 0 else start
            finish = starts[i + 1][1] if i + 1 < len(starts) else end
            durations[label] = finish - begin
        return durations

    def _outcome(self, test: Any, outcome: p.Outcome) -> bool:
        """Attach to the running test; False for class/module-level events."""
        if self._record is None and id(test) in self._index:
            # Python 3.12+ skips a test without starting it.
            self._record = p.TestRecord(self._index[id(test)], started=False)
        if isinstance(test, unittest.suite._ErrorHolder) or self._record is None:  # type: ignore[attr-defined]
            description = (
                test.description if hasattr(test, "description") else str(test)
            )
            assert isinstance(outcome, p.Error | p.Skip)
            self._conn.send(p.FixtureOutcome(self._unit, description, outcome))
            return False
        self._record.outcomes.append(outcome)
        return True

    def _portable(self, err: Any, test: Any) -> p.ExcInfo:
        # Drop unittest's own frames here, where they are recognisable;
        # after pickling they no longer carry the marker unittest looks for.
        clean = getattr(self, "_clean_tracebacks", None)
        if clean is not None and err[2] is not None:
            err = (err[0], err[1], clean(*err, test))
        return p.portable_exc_info(err, test)

    # -- outcomes ------------------------------------------------------

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._outcome(test, p.Success())

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._outcome(test, p.Error(self._portable(err, test)))

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._outcome(test, p.Failure(self._portable(err, test)))

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._outcome(test, p.Skip(reason))

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._outcome(test, p.ExpectedFailure(self._portable(err, test)))

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._outcome(test, p.UnexpectedSuccess())

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._outcome(
                test,
                p.SubTestResult(
                    p.portable(_subtest_message(subtest)),
                    {k: p.portable(v) for k, v in subtest.params.items()},
                    self._portable(err, test),
                ),
            )

    def addDuration(self, test: Any, elapsed: float) -> None:
        if self._record is not None:
            self._record.duration = elapsed

    def _exc_info_to_string(self, err: Any, test: Any) -> str:
        # The parent formats errors; storing text here would only cost time.
        return ""


def test_index(tests: Sequence[Any]) -> dict[int, int]:
    return {id(test): i for i, test in enumerate(tests)}


def connections_debug_sql() -> bool:
    return any(connections[alias].force_debug_cursor for alias in connections)


def use_databases(config: p.Configure) -> None:
    """Point every alias at this slot's database, in place as Django expects."""
    if config.sqlite_dir and config.fast_sqlite:
        from ..databases.sqlite import tune_sqlite

        tune_sqlite(config.sqlite_dir)
    if config.fast_postgresql:  # a forked worker has it already
        from ..databases.postgresql import tune_postgresql

        tune_postgresql(
            target["NAME"]
            for target in config.databases.values()
            if isinstance(target, dict)
        )
    for alias, target in config.databases.items():
        if isinstance(target, dict):
            connection = connections[alias]
            connection.settings_dict.update(target)
            connection.close()
            settings.DATABASES[alias]["NAME"] = target["NAME"]
    for alias, target in config.databases.items():
        if isinstance(target, str):
            connections[alias].close()
            connections[alias].creation.set_as_test_mirror(
                connections[target].settings_dict
            )
            settings.DATABASES[alias]["NAME"] = connections[alias].settings_dict["NAME"]
    for alias, contents in config.serialized.items():
        connections[alias]._test_serialized_contents = contents  # type: ignore[attr-defined]
    if config.sqlite_dir:
        from ..databases.sqlite import keep_open_like_memory

        keep_open_like_memory(config.sqlite_dir)
    if config.debug_sql:
        # As DebugSQLTextTestResult does in a serial run.
        logging.getLogger("django.db.backends").setLevel(logging.DEBUG)
        for alias in connections:
            connections[alias].force_debug_cursor = True


def run_unit(
    conn: Connection,
    message: p.RunUnit,
    tests: Sequence[Any],
    *,
    failfast: bool,
    index: dict[int, int] | None = None,
) -> bool:
    """Run one unit as a top-level suite; False if the worker should stop."""
    from .unit_suite import FlushedDatabases, UnitSuite

    result = WorkerResult(conn, message.unit, tests, index)
    result.failfast = failfast
    flushed = FlushedDatabases(
        list(connections) if message.flushed is None else message.flushed
    )
    suite = UnitSuite(
        [tests[i] for i in message.indices],
        announce=lambda method, target: conn.send(
            p.FixtureStarted(message.unit, method, target)
        ),
        databases=flushed,
    )
    try:
        suite.run(result)
    except KeyboardInterrupt:
        # Raised by test code (a worker gets no terminal signals). Fixtures
        # and transactions are now in an unknown state, so this process stops
        # and the parent hands the rest of the unit to a fresh one, unless it
        # came from a fixture, where a retry would only do it again.
        in_test = result.last_error_was_interrupt
        if not in_test:
            conn.send(
                p.FixtureOutcome(
                    message.unit,
                    f"KeyboardInterrupt outside a test ({result.current_class})",
                    p.Error(p.portable_exc_info(sys.exc_info())),  # type: ignore[arg-type]
                )
            )
        conn.send(
            p.UnitDone(
                message.unit,
                result.class_durations(),
                abandoned=True,
                retry=in_test,
                flushed=None,
            )
        )
        return False
    conn.send(
        p.UnitDone(
            message.unit, result.class_durations(), flushed=sorted(flushed.aliases)
        )
    )
    return not result.shouldStop


def import_errors(tests: Sequence[Any]) -> dict[str, str]:
    """Modules that failed to import here, with their tracebacks."""
    failed = unittest.loader._FailedTest  # type: ignore[attr-defined]
    return {
        test._testMethodName: str(test._exception)
        for test in tests
        if isinstance(test, failed)
    }


def dump_stacks_on_sigusr1(path: str) -> None:
    """Let the parent see where this worker is stuck (--group-timeout)."""
    stream = open(path, "w")  # noqa: SIM115 - lives as long as the process
    faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True)


def serve(conn: Connection, tests: Sequence[Any], *, failfast: bool) -> None:
    """The worker's loop; returns when told to stop or the parent is gone."""
    ids = [test.id() for test in tests]
    conn.send(p.Hello(os.getpid(), ids, import_errors(tests), time.monotonic()))
    try:
        config = conn.recv()
        if not isinstance(config, p.Configure):
            return
        use_databases(config)
        index = test_index(tests)
        while True:
            message = conn.recv()
            if not isinstance(message, p.RunUnit):
                return
            if not run_unit(conn, message, tests, failfast=failfast, index=index):
                return
    except (EOFError, OSError):
        # The parent went away; there is nobody left to report to.
        return
    finally:
        for alias in connections:
            connection = connections[alias]
            type(connection).close(connection)  # also a stand-in's
