"""Messages between the parent and its workers, named once, here.

Both sides import this module, so it imports nothing from either. Tests
cross the pipe as indices into the suite both sides built the same way
(never as test objects, which may not pickle); errors cross as exc_info
tuples made picklable by tblib, or as a ``RemoteError`` carrying the text
when the original will not pickle.
"""

from __future__ import annotations

import copyreg
import pickle
import traceback
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

import tblib.pickling_support

from ..environment import WORKER_ENV  # noqa: F401 - also named here

tblib.pickling_support.install()


def _rebuilt(
    cls: type[BaseException],
    args: tuple[Any, ...],
    cause: BaseException | None,
    tb: TracebackType | None,
    context: BaseException | None,
    suppress_context: bool,
) -> BaseException:
    exc = cls(*args)
    exc.__cause__, exc.__context__ = cause, context
    exc.__suppress_context__ = suppress_context
    return exc.with_traceback(tb)


def _reduce_with_args(exc: BaseException) -> tuple[Any, ...]:
    return (
        _rebuilt,
        (
            type(exc),
            exc.args,
            exc.__cause__,
            exc.__traceback__,
            exc.__context__,
            exc.__suppress_context__,
        ),
    )


def _keep_unicode_errors_whole() -> None:
    """tblib rebuilds an exception whose class has its own ``__init__``
    from no arguments, which leaves a ``UnicodeEncodeError`` (a lone
    surrogate printed to a strict stdout) without its encoding, object,
    position and reason: its report would read "UnicodeEncodeError" and
    nothing more. These are rebuilt from their arguments instead (the
    traceback and chain still travel through tblib)."""
    for cls in (UnicodeEncodeError, UnicodeDecodeError, UnicodeTranslateError):
        copyreg.pickle(cls, _reduce_with_args)


_keep_unicode_errors_whole()

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]


class RemoteError(Exception):
    """Stands in for an exception from a worker that could not be pickled."""


def portable_exc_info(err: ExcInfo, test: object = None) -> ExcInfo:
    """Return ``err`` if it survives a pickle round trip, else a stand-in.

    Checked where the error is produced, so one odd exception costs its own
    test's report, never the run.
    """
    try:
        # tblib's install() covered only the classes that existed then; the
        # project's own errors (and a driver's) would lose their __cause__,
        # __context__ and traceback without this.
        tblib.pickling_support.install(err[1])
        _keep_unicode_errors_whole()  # which install() may just have undone
        pickle.loads(pickle.dumps(err))
        return err
    except Exception as exc:
        text = "".join(traceback.format_exception(*err))
        stand_in = RemoteError(
            f"{err[0].__module__}.{err[0].__qualname__} raised by {test} could "
            f"not be sent from the worker ({exc!r}). Its traceback there:\n\n"
            f"{text}"
        )
        return (RemoteError, stand_in, None)


def portable(value: Any) -> Any:
    """``value`` if it pickles, else its repr (for subtest parameters)."""
    try:
        pickle.loads(pickle.dumps(value))
        return value
    except Exception:
        return repr(value)


# -- outcomes of one test -------------------------------------------------


@dataclass
class Success:
    pass


@dataclass
class Failure:
    err: ExcInfo


@dataclass
class Error:
    err: ExcInfo


@dataclass
class Skip:
    reason: str
    #: The subtest that was skipped (its ``err`` None), else the test.
    subtest: SubTestResult | None = None


@dataclass
class ExpectedFailure:
    err: ExcInfo


@dataclass
class UnexpectedSuccess:
    pass


@dataclass
class SubTestResult:
    message: Any
    params: dict[str, Any]
    err: ExcInfo | None


Outcome: TypeAlias = (
    Success
    | Failure
    | Error
    | Skip
    | ExpectedFailure
    | UnexpectedSuccess
    | SubTestResult
)


@dataclass
class TestRecord:
    """Everything one test did, replayed in the parent as one block."""

    index: int
    outcomes: list[Outcome] = field(default_factory=list)
    duration: float | None = None
    #: What reached the worker's fd 1 and 2 during the test, as bytes: the
    #: parent writes them to its own stdout and stderr as they are.
    stdout: bytes = b""
    stderr: bytes = b""
    #: With ``--buffer``: what unittest's buffers (``sys.stdout`` and
    #: ``sys.stderr`` during the test) held, for the report of a failure.
    buffered_stdout: str = ""
    buffered_stderr: str = ""
    sql: str = ""
    #: False for a test skipped before it started (Python 3.12+ reports such
    #: a skip without startTest, and does not count it as run).
    started: bool = True

    @property
    def failed(self) -> bool:
        return any(
            isinstance(o, Failure | Error | UnexpectedSuccess)
            or (isinstance(o, SubTestResult) and o.err is not None)
            for o in self.outcomes
        )


# -- parent to worker ----------------------------------------------------


@dataclass
class Configure:
    """Which databases the worker's slot uses, sent once databases exist.

    ``databases`` maps an alias to the settings dict of its clone, or, for a
    test mirror, to the name of the alias it mirrors.
    """

    databases: dict[str, dict[str, Any] | str]
    serialized: dict[str, str]
    debug_sql: bool
    #: The run's directory, whose SQLite files stand in for in-memory test
    #: databases (databases.keep_open_like_memory) ...
    sqlite_dir: str = ""
    #: ... and are tuned, unless switched off (databases.tune_sqlite).
    fast_sqlite: bool = False
    #: PostgreSQL clones commit without waiting for an fsync, unless
    #: switched off (databases.tune_postgresql).
    fast_postgresql: bool = False


@dataclass
class RunUnit:
    unit: int
    indices: list[int]
    #: The slot's databases that a TransactionTestCase has flushed since
    #: the migrations' contents were last there (None: not known, as after
    #: a crash); a TestCase on one of them gets those contents back first.
    flushed: list[str] | None = field(default_factory=list)
    #: Indices (among ``indices``) of tests not to run: only their class's
    #: and module's fixtures run around them. A crashed test's, so that the
    #: teardowns that would have followed it run, as serially.
    fixtures_only: list[int] = field(default_factory=list)
    #: As ``fixtures_only``, but only their module's fixtures run: after a
    #: worker died in a class fixture, its module's teardown is still due.
    module_fixtures_only: list[int] = field(default_factory=list)


@dataclass
class Stop:
    """Finish the test in flight, start nothing more, exit."""


# -- worker to parent ----------------------------------------------------


@dataclass
class Hello:
    pid: int
    test_ids: list[str]
    #: module -> traceback, for modules that failed to import in the worker
    import_errors: dict[str, str] = field(default_factory=dict)
    #: time.monotonic() when the worker was ready (one clock for every
    #: process of the machine), for the timeline's start-up bar
    ready_at: float | None = None


@dataclass
class TestStarted:
    unit: int
    index: int


@dataclass
class FixtureStarted:
    """A class or module fixture is about to run: where the worker is,
    should it die. ``method`` is setUpClass, tearDownClass, setUpModule or
    tearDownModule; ``target`` the class ("app.tests.Cls") or module."""

    unit: int
    method: str
    target: str

    @property
    def description(self) -> str:
        """As unittest names such a fixture: ``setUpClass (app.tests.Cls)``."""
        return f"{self.method} ({self.target})"

    @property
    def sets_up(self) -> bool:
        """A failed setUp fixture means its tests do not run."""
        return self.method.startswith("setUp")


@dataclass
class TestDone:
    unit: int
    record: TestRecord


@dataclass
class FixtureOutcome:
    """An error or skip outside any test: setUpClass, setUpModule, teardowns."""

    unit: int
    description: str
    outcome: Error | Skip
    #: With ``--buffer``: what unittest's buffers held when it happened.
    buffered_stdout: str = ""
    buffered_stderr: str = ""


@dataclass
class UnitOutput:
    """What a unit wrote to fd 1 and 2 outside any test (class and module
    fixtures, between tests), sent before the next ``TestStarted``,
    ``FixtureOutcome`` or ``UnitDone``: shown as it comes, also with
    ``--buffer``, which holds only what goes through ``sys.stdout``."""

    unit: int
    stdout: bytes
    stderr: bytes


@dataclass
class UnitDone:
    unit: int
    class_durations: dict[str, float]
    #: The worker gave up on the unit (a test raised KeyboardInterrupt) and
    #: is exiting; ``retry``: the tests it did not report may run elsewhere.
    abandoned: bool = False
    retry: bool = False
    #: As ``RunUnit.flushed``, once the unit is over.
    flushed: list[str] | None = field(default_factory=list)
    #: Each started test's share of the unit's time, by the worker's test
    #: index: from its start to the next test's start in its class, the
    #: class's last to its end. What a class took minus its tests' shares
    #: is then only its fixtures, which a chunk of it repeats.
    test_durations: dict[int, float] = field(default_factory=dict)
