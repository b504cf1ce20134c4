"""Call a function in several fresh processes at the same instant.

    results = call_concurrently(10, charge_card, order_id=1)
    results = make_concurrent_calls((reserve, {"qty": 1}), (cancel, {}))

Results come back in order. A call that raised comes back as a
``WrappedError`` in its slot (``reraise()`` raises the original with the
remote traceback as its cause); a call whose process crashed, timed out or
returned something unserialisable is a ``WrappedError`` that says so, never
a silent ``None``.

Calls run in processes forked by a call server (``server``), started once
per test process: in a worker forked from the fork server, a fork of the
worker taken as it starts (``fork_server``: Django is set up and no database
connected, so the first call takes milliseconds); elsewhere, or if that
server is gone, a fresh interpreter through the ``concurrent_call_wrapper``
management command. Every call uses the caller's live database settings (a
worker's clone under ``--parallel-groups``) for the aliases the calling
test may use, fails as that test would on the others (``forbidden``),
connects first, and starts only when all have connected.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import traceback
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .server import SERVER_ENV, Batch, BatchDone, CallOutcome, ServerReady

if TYPE_CHECKING:
    from ..parallel.processes import Child

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover - Python 3.10
    from exceptiongroup import ExceptionGroup


Call = tuple["Callable[..., Any] | str", dict[str, Any]]


class ConcurrentCallError(Exception):
    """The calls could not be made as asked (misuse, unserialisable input)."""


class RemoteTraceback(Exception):
    """The traceback of a call, as text, attached as the cause on reraise()."""

    def __str__(self) -> str:
        return "\n\n" + str(self.args[0]) if self.args else ""


class WrappedError(Exception):
    """An exception from a concurrent call, in that call's result slot.

    ``error`` is the exception itself (a ``ConcurrentCallError`` when the
    call never produced one: crash, timeout, unserialisable result);
    ``traceback`` is the traceback text from the call's process.
    """

    def __init__(self, error: BaseException, traceback: str = "") -> None:
        super().__init__(f"{type(error).__qualname__}: {error}")
        self.error = error
        self.traceback = traceback

    def reraise(self) -> None:
        """Raise the original exception, with the remote traceback as cause."""
        raise self.error from RemoteTraceback(self.traceback)

    def print_tb(self, file: Any = None) -> None:
        print(self.traceback, file=file or sys.stderr)

    def debug(self) -> None:
        """Post-mortem on the remote frames (as far as they came across)."""
        import pdb

        pdb.post_mortem(self.error.__traceback__)

    def __repr__(self) -> str:
        return f"WrappedError({self.error!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, WrappedError)
            and type(other.error) is type(self.error)
            and other.error.args == self.error.args
        )

    __hash__ = Exception.__hash__


@dataclass(frozen=True)
class CallTiming:
    """When one call's function ran, by the clock of its process (epoch s),
    and what its process printed (stdout and stderr, in one text)."""

    pid: int
    start: float | None
    end: float | None
    output: str = ""


class CallResults(list[Any]):
    """The calls' results in order, with when and where each call ran."""

    timings: list[CallTiming]
    released: float | None  # when the start barrier opened

    @property
    def errors(self) -> list[WrappedError]:
        return [r for r in self if isinstance(r, WrappedError)]

    def raise_errors(self, how: Literal["first", "all"] = "first") -> CallResults:
        """Raise the first error (as ``reraise``), or all as an ExceptionGroup."""
        errors = self.errors
        if errors and how == "first":
            errors[0].reraise()
        if errors:
            raise ExceptionGroup(
                f"{len(errors)} of {len(self)} concurrent calls failed",
                [self._with_cause(e) for e in errors],
            )
        return self

    @staticmethod
    def _with_cause(wrapped: WrappedError) -> Exception:
        error = wrapped.error
        if not isinstance(error, Exception):
            error = ConcurrentCallError(repr(error))
        error.__cause__ = RemoteTraceback(wrapped.traceback)
        return error

    @property
    def outputs(self) -> list[str]:
        """What each call's process printed, in order."""
        return [t.output for t in self.timings]

    @property
    def spread(self) -> float:
        """Seconds between the first and the last call's start."""
        starts = [t.start for t in self.timings if t.start is not None]
        return max(starts) - min(starts) if starts else 0.0


# -- the public functions ----------------------------------------------------


def call_concurrently(
    n: int, func: Callable[..., Any] | str, **kwargs: Any
) -> CallResults:
    """Call ``func(**kwargs)`` in ``n`` processes at once; results in order."""
    if not isinstance(n, int) or n < 1:
        raise ConcurrentCallError(f"call_concurrently() needs n >= 1, got {n!r}.")
    return make_concurrent_calls(*[(func, kwargs)] * n)


def make_concurrent_calls(
    *calls: Call,
    timeout: float | None = None,
    raise_errors: Literal["first", "all"] | None = None,
) -> CallResults:
    """Make each ``(func, kwargs)`` call in its own process, all at once.

    ``timeout`` (seconds, for the whole batch) defaults to
    ``settings.CONCURRENT_CALL_TIMEOUT`` or 30. With ``raise_errors`` the
    first error, or all of them as an ExceptionGroup, is raised instead of
    returned.
    """
    if not calls:
        raise ConcurrentCallError("make_concurrent_calls() needs at least one call.")
    from .forbidden import forbidden_here

    forbidden = forbidden_here()  # the aliases the calling test may not use
    check_databases(forbidden)
    payloads = serialise(calls)
    databases, connect = live_databases(forbidden)
    batch = Batch(
        payloads,
        databases,
        connect,
        resolve_timeout(timeout),
        modules_of(calls),
        forbidden,
    )
    results = _server().run(batch)
    if raise_errors is not None:
        results.raise_errors(raise_errors)
    return results


def resolve_timeout(timeout: float | None) -> float:
    if timeout is None:
        from ..conf import call_timeout

        timeout = call_timeout()
    if not timeout or timeout <= 0:
        raise ConcurrentCallError(
            f"The call timeout must be positive, not {timeout!r}."
        )
    return float(timeout)


# -- checks and serialisation --------------------------------------------------


def check_databases(forbidden: Container[str] = ()) -> None:
    """Refuse what would make the calls see different data than the caller,
    on the aliases it may use (not those in ``forbidden``)."""
    from django.db import connections

    for alias in connections:
        if alias in forbidden:
            continue
        connection = connections[alias]
        if connection.in_atomic_block:
            raise ConcurrentCallError(
                f"The caller is inside a transaction on {alias!r} (django.test."
                f"TestCase wraps every test in one), so what it wrote is not "
                f"committed and the concurrent calls cannot see it. Use "
                f"TransactionTestCase for tests that make concurrent calls."
            )
        if connection.vendor == "sqlite":
            name = str(connection.settings_dict.get("NAME") or ":memory:")
            if connection.creation.is_in_memory_db(name):  # type: ignore[attr-defined]
                raise ConcurrentCallError(
                    f"Database {alias!r} is an in-memory SQLite database, which "
                    f"other processes cannot open. Give it a file (DATABASES"
                    f"[{alias!r}]['TEST']['NAME']), or run the tests with "
                    f"concurrent_runner.Runner, which does that for you."
                )


def serialise(calls: Iterable[Call]) -> list[bytes]:
    import dill

    payloads = []
    for number, call in enumerate(calls):
        try:
            func, kwargs = call
        except (TypeError, ValueError):
            raise ConcurrentCallError(
                f"Call {number} is {call!r}; each call is a (function, kwargs) pair."
            ) from None
        if not (callable(func) or isinstance(func, str)) or not isinstance(
            kwargs, dict
        ):
            raise ConcurrentCallError(
                f"Call {number} is {call!r}; each call is a (function or "
                f"'package.module:function', kwargs dict) pair."
            )
        try:
            payloads.append(dill.dumps((func, kwargs), recurse=True))
        except Exception as exc:
            raise ConcurrentCallError(
                _unserialisable(number, func, kwargs, exc)
            ) from exc
    return payloads


def _unserialisable(
    number: int, func: Any, kwargs: dict[str, Any], exc: Exception
) -> str:
    import dill

    for name, value in kwargs.items():
        try:
            dill.dumps(value, recurse=True)
        except Exception as inner:
            return (
                f"Argument {name!r} of call {number} ({type(value).__qualname__}) "
                f"cannot be serialised with dill: {inner!r}. Pass something "
                f"picklable, such as a primary key instead of an object."
            )
    return f"The function of call {number} ({func!r}) cannot be serialised: {exc!r}."


def modules_of(calls: Iterable[Call]) -> list[str]:
    """Modules the calls' functions live in, for the server to import once."""
    modules = set()
    for func, _kwargs in calls:
        if isinstance(func, str):
            modules.add(func.partition(":")[0])
        elif getattr(func, "__module__", None) not in (None, "__main__"):
            modules.add(func.__module__)
    return sorted(modules)


def live_databases(
    forbidden: Container[str] = (),
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The caller's settings for the aliases it may use (not those in
    ``forbidden``: a call never gets settings that may still name a real
    database), and the ones calls connect to before the barrier: ``default``
    and every alias the caller has a connection open to (the ones its test
    uses), of those.
    """
    from django.db import connections

    allowed = [alias for alias in connections if alias not in forbidden]
    databases = {alias: dict(connections[alias].settings_dict) for alias in allowed}
    connect = [
        alias
        for alias in allowed
        if alias == "default" or connections[alias].connection is not None
    ]
    connect = [
        a for a in connect if databases[a].get("ENGINE") != "django.db.backends.dummy"
    ]
    return databases, connect


# -- the server, seen from here ----------------------------------------------------


class CallServer:
    """One running call server: a fresh ``concurrent_call_wrapper --serve``
    process, or one forked by ``fork_server`` (``kind``)."""

    kind = "fresh"
    #: Its ServerReady was received (a forked server's is taken at first use).
    greeted = True
    process: Child

    def __init__(self) -> None:
        from multiprocessing.connection import wait

        from ..parallel.processes import (
            CALL_SERVER_START_TIMEOUT,
            TERMINATE_GRACE,
            spawn_with_channel,
            wait_for,
        )

        argv, env = server_command()
        # Measured outside a run: this server relays coverage.py itself.
        self.coverage = _own_coverage_relay()
        if self.coverage is not None:
            env.update(self.coverage.relay.child_environ("call-server"))
        try:
            self.conn, self.process = spawn_with_channel(
                argv, lambda fd: {**env, SERVER_ENV: str(fd)}
            )
        except BaseException:
            if self.coverage is not None:
                self.coverage.finish()
            raise
        self.pid = os.getpid()  # the process that owns this server
        if not wait([self.conn], CALL_SERVER_START_TIMEOUT):
            self.stop()
            raise ConcurrentCallError(
                f"The concurrent call server did not start within "
                f"{CALL_SERVER_START_TIMEOUT:g}s ({' '.join(argv)})."
            )
        try:
            hello = self.conn.recv()
        except EOFError:
            code = wait_for(self.process, TERMINATE_GRACE)
            self.stop()
            raise ConcurrentCallError(
                f"The concurrent call server exited with code {code} before it "
                f"was ready; its error output is above. Command: {' '.join(argv)}"
            ) from None
        assert isinstance(hello, ServerReady)

    @classmethod
    def forked(cls, conn: Any, pid: int) -> CallServer:
        """The server ``fork_server`` forked: ``pid``, on channel ``conn``."""
        from ..parallel.processes import PidChild

        server = cls.__new__(cls)
        server.kind = "forked"
        server.greeted = False
        server.conn = conn
        server.process = PidChild(pid)
        server.pid = os.getpid()
        server.coverage = None  # it measures itself, as a forked worker does
        return server

    def greet(self) -> bool:
        """Take a forked server's ServerReady; False if it will not come
        within the start timeout (the server is then ended)."""
        from ..parallel.processes import CALL_SERVER_START_TIMEOUT

        try:
            if self.conn.poll(CALL_SERVER_START_TIMEOUT):
                self.greeted = isinstance(self.conn.recv(), ServerReady)
        except (EOFError, OSError):
            pass
        if not self.greeted:
            self.stop()
        return self.greeted

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.process.poll() is None

    def run(self, batch: Batch) -> CallResults:
        from ..parallel.processes import CALL_ANSWER_MARGIN, TERMINATE_GRACE, wait_for

        self.conn.send(batch)
        # The server enforces the batch timeout; the margin covers ending
        # the calls and a server that stopped answering.
        if not self.conn.poll(batch.timeout + CALL_ANSWER_MARGIN):
            self.stop()
            return _all_failed(
                batch, "The call server stopped answering; it was ended."
            )
        try:
            done: BatchDone = self.conn.recv()
        except (EOFError, OSError):
            code = wait_for(self.process, TERMINATE_GRACE)
            self.stop()
            return _all_failed(batch, f"The call server died (exit code {code}).")
        if self.coverage is not None:
            self.coverage.merge()  # the calls have saved theirs
        return _results(done)

    def stop(self) -> None:
        """End the server and any call it still runs (they share its group).

        Closing the channel lets it exit on its own (so atexit handlers, such
        as coverage's, run); signals only if it does not.
        """
        from ..parallel.processes import CALL_SERVER_EXIT_GRACE, end_processes

        self.conn.close()
        end_processes([self.process], patience=CALL_SERVER_EXIT_GRACE)
        if self.coverage is not None:
            coverage, self.coverage = self.coverage, None
            coverage.finish()


def server_command() -> tuple[list[str], dict[str, str]]:
    """How to start ``concurrent_call_wrapper --serve`` for this project.

    With a settings module, through ``python -m django`` (or the project's
    manage.py when ``settings.CONCURRENT_CALL_MANAGE_PY`` names it). With
    ``settings.configure()`` there is no module to name, so the command that
    started this process is run again and ``Runner`` serves instead of
    testing.
    """
    from django.conf import settings

    from ..conf import call_manage_py
    from ..coverage_relay import child_environ
    from ..environment import SYNC_ENV
    from ..parallel import protocol
    from .sync import sync_dir

    env = dict(os.environ)
    env.pop(protocol.WORKER_ENV, None)
    env.update(child_environ("call-server"))
    # The calls share mp_lock & co. with their caller: the run's directory,
    # or outside a run (pytest-django, Django's runner) the caller's own.
    env[SYNC_ENV] = str(sync_dir())
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    manage_py = call_manage_py()
    if manage_py:
        return [
            sys.executable,
            str(manage_py),
            "concurrent_call_wrapper",
            "--serve",
        ], env
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if module and module == settings.SETTINGS_MODULE:
        argv = [sys.executable, "-m", "django", "concurrent_call_wrapper", "--serve"]
        return [*argv, f"--settings={module}"], env
    return [sys.executable, *sys.orig_argv[1:]], env


_current: CallServer | None = None


def _server() -> CallServer:
    global _current
    if _current is not None and not _current.greeted and not _current.greet():
        _current = None  # the forked server failed: a fresh one instead
    if _current is None or not _current.alive():
        _current = CallServer()
    return _current


def fork_server(close: Iterable[int] = ()) -> None:
    """Fork this process's call server now, from this process.

    For a worker forked from the fork server, as it starts: it has Django
    set up, the suite imported and no database connection or other thread,
    which is what a call server must be; a fresh interpreter would cost
    about 0.4 s at the first call. ``close``: descriptors the server must
    not hold (the worker's channel, whose end the parent must see). If the
    fork fails, the first call starts a fresh interpreter, as elsewhere.
    """
    global _current
    from multiprocessing.connection import Pipe

    from ..coverage_relay import measure_forked_child, save_forked_child
    from ..parallel import protocol
    from .server import serve

    ours, theirs = Pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return
    if pid == 0:  # the call server
        code = 1
        try:
            ours.close()
            for fd in close:
                os.close(fd)
            os.setsid()  # ended with the calls it runs, as a fresh one is
            os.environ.pop(protocol.WORKER_ENV, None)  # as a fresh one has it
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            measure_forked_child()
            serve(theirs)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            save_forked_child()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    theirs.close()
    _current = CallServer.forked(ours, pid)


def forks_server_for(tests: Iterable[Any]) -> bool:
    """Whether a worker running ``tests`` should fork a call server as it
    starts: some test makes concurrent calls (``ConcurrentTestMixin``)."""
    return any(isinstance(test, ConcurrentTestMixin) for test in tests)


@atexit.register
def _stop_server() -> None:
    if _current is not None and _current.pid == os.getpid():
        _current.stop()


def stop_server() -> None:
    """End this process's call server, if it has one; the next batch
    starts another."""
    global _current
    _stop_server()
    _current = None


def _own_coverage_relay() -> Any:
    """When coverage.py measures this process and no run relays it (calls
    made under another test runner), a relay of the call server's own; its
    data is folded in after every batch and when the server ends."""
    from ..coverage_relay import CoverageRelay, Relay

    if Relay.from_environ() is not None:
        return None  # the run's (``Runner``): the run folds it in
    return CoverageRelay.start()


def _results(done: BatchDone) -> CallResults:
    results = CallResults(_value(o) for o in done.outcomes)
    results.timings = [
        CallTiming(o.pid, o.start, o.end, o.output) for o in done.outcomes
    ]
    results.released = done.released
    return results


def _value(outcome: CallOutcome) -> Any:
    import dill

    if outcome.status == "ok":
        try:
            return dill.loads(outcome.payload)
        except Exception as exc:
            return WrappedError(
                ConcurrentCallError(
                    f"The call's result could not be loaded here: {exc!r}"
                )
            )
    if outcome.status == "error" and outcome.payload is not None:
        try:
            return WrappedError(dill.loads(outcome.payload), outcome.text)
        except Exception:
            pass
    message = _first_line(outcome)
    if outcome.status in ("crashed", "timeout") and outcome.output.strip():
        message += f"\n\nIts output:\n{outcome.output.rstrip()}"
    return WrappedError(ConcurrentCallError(message), outcome.text)


def _first_line(outcome: CallOutcome) -> str:
    if outcome.status == "error":
        lines = outcome.text.strip().splitlines()
        return lines[-1] if lines else "The call failed."
    return outcome.text


def _all_failed(batch: Batch, why: str) -> CallResults:
    results = CallResults(
        WrappedError(ConcurrentCallError(why)) for _ in batch.payloads
    )
    results.timings = [CallTiming(0, None, None) for _ in batch.payloads]
    results.released = None
    return results


# -- the mixin ---------------------------------------------------------------------


class ConcurrentTestMixin:
    """``self.call_concurrently`` / ``self.make_concurrent_calls`` for tests.

    ``concurrent_call_timeout`` (seconds) overrides
    ``settings.CONCURRENT_CALL_TIMEOUT`` for the class;
    ``concurrent_call_raise`` ("first" or "all") raises errors instead of
    returning them.
    """

    concurrent_call_timeout: float | None = None
    concurrent_call_raise: Literal["first", "all"] | None = None

    def call_concurrently(
        self, n: int, func: Callable[..., Any] | str, **kwargs: Any
    ) -> CallResults:
        if not isinstance(n, int) or n < 1:
            raise ConcurrentCallError(f"call_concurrently() needs n >= 1, got {n!r}.")
        return self.make_concurrent_calls(*[(func, kwargs)] * n)

    def make_concurrent_calls(self, *calls: Call) -> CallResults:
        from django.test import TestCase

        if isinstance(self, TestCase):
            raise ConcurrentCallError(
                f"{type(self).__qualname__} is a django.test.TestCase: each test "
                f"runs in a transaction that is never committed, so concurrent "
                f"calls cannot see its data. Make it a TransactionTestCase."
            )
        return make_concurrent_calls(
            *calls,
            timeout=self.concurrent_call_timeout,
            raise_errors=self.concurrent_call_raise,
        )
