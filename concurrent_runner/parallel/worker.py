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

import contextlib
import copy
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
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from django.conf import settings
from django.db import connections

from . import protocol as p
from .capture import Capture, adopt_stdio, stdio_settings


@dataclass(frozen=True)
class WorkerSpec:
    """What the parent puts in the worker's environment."""

    fd: int
    slot: int
    run: int  # which run_tests() call of the process is the parallel one
    shuffle_seed: int | None
    stack_file: str  # where faulthandler writes the stacks on SIGUSR1
    #: How the parent's sys.stdout and sys.stderr encode and buffer, taken
    #: where the spec is made (``capture.adopt_stdio``).
    stdio: dict[str, dict[str, Any]] = field(default_factory=stdio_settings)

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

    What a test writes reaches fd 1 and 2, where ``capture`` catches it
    (``sys.stdout`` stays a real file); with ``buffer`` (``--buffer``),
    unittest's buffers stand in for ``sys.stdout`` and ``sys.stderr`` during
    tests and fixtures, as in a serial run, and what they held travels too.
    The parent shows both; this process never mirrors anything itself.
    """

    def __init__(
        self,
        conn: Connection,
        unit: int,
        tests: Sequence[Any],
        index: dict[int, int] | None = None,
        *,
        buffer: bool = False,
        capture: Capture | None = None,
    ) -> None:
        super().__init__()
        self.buffer = buffer
        self._capture = capture
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
        #: UnitDone.test_durations; the test started last, its class, when.
        self.test_durations: dict[int, float] = {}
        self._last_start: tuple[int, str, float] | None = None
        self.current_class = ""
        self.last_error_was_interrupt = False

    # -- output --------------------------------------------------------

    def _snap(self) -> tuple[bytes, bytes]:
        return self._capture.snap() if self._capture is not None else (b"", b"")

    def send_output(self) -> None:
        """Send what the unit wrote since the last test ended, outside any
        test (a class or module fixture), before what comes next."""
        stdout, stderr = self._snap()
        if stdout or stderr:
            self._conn.send(p.UnitOutput(self._unit, stdout, stderr))

    def _buffered(self) -> tuple[str, str]:
        """What --buffer's buffers hold now, while they stand in for
        ``sys.stdout`` and ``sys.stderr``."""
        if not self.buffer:
            return "", ""
        held = []
        for name, attr in (("stdout", "_stdout_buffer"), ("stderr", "_stderr_buffer")):
            buffer = getattr(self, attr, None)
            in_use = buffer is not None and getattr(sys, name) is buffer
            held.append(_text_of(buffer) if in_use else "")
        return held[0], held[1]

    def _restoreStdout(self) -> None:
        # The parent shows a failure's output (replay); mirrored here it
        # would reach fd 1 and be shown twice.
        self._mirrorOutput = False
        for attr in ("_stdout_buffer", "_stderr_buffer"):
            buffer = getattr(self, attr, None)
            if buffer is not None and buffer.closed:
                # A test closed sys.stdout: unittest would raise here (and the
                # worker die); the next test gets a new buffer.
                setattr(self, attr, io.StringIO())
        super()._restoreStdout()  # type: ignore[misc]

    # -- bookkeeping ---------------------------------------------------

    def _begin(self, test: Any, *, started: bool) -> p.TestRecord:
        self.send_output()  # what came before the test is not the test's
        self._record = p.TestRecord(self._index[id(test)], started=started)
        return self._record

    def startTest(self, test: Any) -> None:
        label = f"{type(test).__module__}.{type(test).__qualname__}"
        self._class_starts.setdefault(label, time.monotonic())
        self.current_class = label
        self.last_error_was_interrupt = False
        record = self._begin(test, started=True)
        self._conn.send(p.TestStarted(self._unit, record.index))
        self._test_started = time.monotonic()
        if self._last_start is not None and self._last_start[1] == label:
            # What unittest did between the two tests is the earlier one's.
            index, _label, started = self._last_start
            self.test_durations[index] = self._test_started - started
        self._last_start = (record.index, label, self._test_started)
        if connections_debug_sql():
            self._sql = io.StringIO()
            self._sql_handler = logging.StreamHandler(self._sql)
            logging.getLogger("django.db.backends").addHandler(self._sql_handler)
        super().startTest(test)

    def stopTest(self, test: Any) -> None:
        record = self._record
        if record is None:  # stopped without starting: skipped (3.12.0-3.12.1)
            record = self._begin(test, started=False)
        escaping = sys.exc_info()
        if escaping[0] is not None and issubclass(escaping[0], KeyboardInterrupt):
            # unittest lets KeyboardInterrupt out of the test and calls
            # stopTest on the way; it is this test's error.
            record.outcomes.append(p.Error(self._portable(escaping, test)))
            self.last_error_was_interrupt = True
        record.buffered_stdout, record.buffered_stderr = self._buffered()
        super().stopTest(test)
        record.stdout, record.stderr = self._snap()
        if record.duration is None and record.started:
            # addDuration exists from Python 3.12. A test skipped before it
            # started has no duration, as in a serial run.
            record.duration = time.monotonic() - self._test_started
        if record.started:
            # Until the next test of its class starts (startTest).
            self.test_durations[record.index] = time.monotonic() - self._test_started
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
            # Python 3.12.0-3.12.1 skip a test without starting it.
            self._begin(test, started=False)
        if isinstance(test, unittest.suite._ErrorHolder) or self._record is None:  # type: ignore[attr-defined]
            description = (
                test.description if hasattr(test, "description") else str(test)
            )
            assert isinstance(outcome, p.Error | p.Skip)
            self.send_output()
            out, err = self._buffered()
            self._conn.send(
                p.FixtureOutcome(self._unit, description, outcome, out, err)
            )
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
        if isinstance(test, unittest.case._SubTest):  # type: ignore[attr-defined]
            # Skipped inside ``with self.subTest(...)``: the subtest is named.
            self._outcome(test.test_case, p.Skip(reason, _subtest_result(test, None)))
            return
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
            self._outcome(test, _subtest_result(subtest, self._portable(err, test)))

    def addDuration(self, test: Any, elapsed: float) -> None:
        if self._record is not None:
            self._record.duration = elapsed

    def _exc_info_to_string(self, err: Any, test: Any) -> str:
        # The parent formats errors; storing text here would only cost time.
        return ""


def _subtest_result(subtest: Any, err: Any) -> p.SubTestResult:
    """A subtest's outcome as sent to the parent: its message and
    parameters, and ``err`` (None for a skipped subtest)."""
    return p.SubTestResult(
        p.portable(_subtest_message(subtest)),
        {k: p.portable(v) for k, v in subtest.params.items()},
        err,
    )


def _text_of(buffer: Any) -> str:
    try:
        return str(buffer.getvalue())
    except ValueError:  # closed by the test
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
    mark_as_creation_does(config)


def mark_as_creation_does(config: p.Configure) -> None:
    """What Django's ``create_test_db`` does to the suite: the skips and
    expected failures of ``connection.features.django_test_skips`` and
    ``django_test_expected_failures``, applied to the test classes when
    ``RUNNING_DJANGOS_TEST_SUITE`` is ``"true"`` (Django's own suite, a
    database backend's). Workers start before the parent creates the
    databases, so they apply them here, for the aliases it created.

    The rest of what creating the test databases changes in the process
    reaches a worker through ``Configure`` (``use_databases``): every
    alias's test ``NAME`` in ``settings.DATABASES`` and in its connection,
    test mirrors, the contents serialized for ``serialized_rollback``, and
    ``force_debug_cursor`` (``--debug-sql``); ``MIGRATION_MODULES`` is put
    back as it was. Caches filled while migrating (content types, sites)
    hold ids that a clone has too, and fill again on first use; what a
    connection sets up when it opens (``connection_created`` handlers,
    server version, features) happens again on the worker's first query,
    against a clone on the same server.
    """
    if os.environ.get("RUNNING_DJANGOS_TEST_SUITE") != "true":
        return
    for alias, target in config.databases.items():
        if isinstance(target, dict):  # mirrors were not created
            connections[alias].creation.mark_expected_failures_and_skips()


def run_unit(
    conn: Connection,
    message: p.RunUnit,
    tests: Sequence[Any],
    *,
    failfast: bool,
    index: dict[int, int] | None = None,
    buffer: bool = False,
    capture: Capture | None = None,
) -> bool:
    """Run one unit as a top-level suite; False if the worker should stop."""
    from .unit_suite import FlushedDatabases, UnitSuite

    result = WorkerResult(
        conn, message.unit, tests, index, buffer=buffer, capture=capture
    )
    result.failfast = failfast
    # None: a worker died on this slot; its databases are in a state
    # nobody knows.
    flushed = FlushedDatabases(
        message.flushed or [],
        unknown=list(connections) if message.flushed is None else [],
    )
    suite = UnitSuite(
        [_stand_in(tests[i], i, message) for i in message.indices],
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
        result.send_output()
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
                test_durations=result.test_durations,
            )
        )
        return False
    result.send_output()  # the last class's and module's teardowns
    conn.send(
        p.UnitDone(
            message.unit,
            result.class_durations(),
            flushed=sorted(flushed.aliases),
            test_durations=result.test_durations,
        )
    )
    return not result.shouldStop


def _stand_in(test: Any, index: int, message: p.RunUnit) -> Any:
    """``test``, or a copy that does not run where ``message`` says so:
    unittest still runs the fixtures around it (its class's and module's,
    or only its module's) and reports nothing of its own."""
    if index in message.module_fixtures_only:
        # A class of the test's module with no fixtures of its own; skipped,
        # so that unittest (and UnitSuite) leave its class fixtures alone.
        cls = type(
            "ModuleFixturesOnly",
            (unittest.TestCase,),
            {"__module__": type(test).__module__, "__unittest_skip__": True},
        )
        stand_in = cls("run")
    elif index in message.fixtures_only:
        stand_in = copy.copy(test)
    else:
        return test
    stand_in.run = lambda result=None: None
    return stand_in


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


def serve(
    conn: Connection,
    tests: Sequence[Any],
    *,
    failfast: bool,
    buffer: bool = False,
    stdio: dict[str, dict[str, Any]] | None = None,
) -> None:
    """The worker's loop; returns when told to stop or the parent is gone.

    ``stdio``: how the parent's stdout and stderr encode and buffer
    (``WorkerSpec.stdio``); from the moment its databases are set, what
    this process writes to fd 1 and 2 is caught and sent with the test or
    unit that wrote it. What a fresh worker wrote while it started (its
    imports, discovery) stays in its log: the test process wrote the same
    when it started, and a serial run shows it once.
    """
    ids = [test.id() for test in tests]
    conn.send(p.Hello(os.getpid(), ids, import_errors(tests), time.monotonic()))
    capture: Capture | None = None
    try:
        config = conn.recv()
        if not isinstance(config, p.Configure):
            return
        use_databases(config)
        adopt_stdio(stdio if stdio is not None else stdio_settings())
        capture = Capture()
        index = test_index(tests)
        while True:
            message = conn.recv()
            if not isinstance(message, p.RunUnit):
                return
            if not run_unit(
                conn,
                message,
                tests,
                failfast=failfast,
                index=index,
                buffer=buffer,
                capture=capture,
            ):
                return
    except (EOFError, OSError):
        # The parent went away; there is nobody left to report to.
        return
    finally:
        if capture is not None:
            # What the process says from here on (at exit) goes to its log.
            with contextlib.suppress(OSError):
                capture.close()
        for alias in connections:
            connection = connections[alias]
            type(connection).close(connection)  # also a stand-in's
