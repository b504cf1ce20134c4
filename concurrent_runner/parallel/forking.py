"""Workers forked from a copy of the parent, taken before any database exists.

Starting a worker as a fresh interpreter costs an import of Django and the
project and a second discovery of the suite, for every worker, on cores the
parent needs for migrations. Instead, right after discovery the parent forks
one *fork server*: a copy of itself with Django set up, the suite built and
no database connection, no thread and nothing else running. For every
worker the parent sends it one end of a new socket pair and goes on, without
waiting; it forks a child that becomes the worker in a few milliseconds, and
reports the child's pid and, later, how it ended (the fork server is the
workers' parent and reaps them).

The fork server is never given anything but fork requests, so every worker
starts from the same clean state, also a replacement started mid-run after a
crash. Where forking is unsafe or unavailable (not Linux, other threads
running, coverage.py older than 7.10.4 measuring,
``CONCURRENT_RUNNER_FORK_WORKERS = False``), and once a fork has failed or
gone unanswered or the fork server is gone, the workers asked for from then
on are fresh interpreters (``pool.WorkerProcess``).
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

from ..coverage_relay import forks_measured, measure_forked_child, save_forked_child
from . import protocol as p
from .processes import (
    FORK_TIMEOUT,
    KILL_WAIT,
    TERMINATE_GRACE,
    PidChild,
    channel_pair,
    connect_child,
    end_processes,
)

#: The ``returncode`` of a worker the fork server could not fork.
FORK_FAILED = 255


def fork_workers_enabled() -> bool:
    """Whether this process may fork workers (else: fresh interpreters)."""
    return fork_refusal() is None


def fork_refusal() -> str | None:
    """Why this process may not fork workers, in words for ``-v 2``; None
    if it may."""
    from ..conf import fork_workers

    if not sys.platform.startswith("linux"):
        return f"workers are forked on Linux only, and this is {sys.platform}"
    if not fork_workers():
        return "CONCURRENT_RUNNER_FORK_WORKERS is False"
    if threading.active_count() > 1:
        # A fork copies only the calling thread; another thread's locks and
        # work would be left half-way in every copy.
        others = [
            t.name for t in threading.enumerate() if t is not threading.current_thread()
        ]
        return f"other threads run in the test process ({', '.join(others)})"
    if not forks_measured():
        # Coverage.py before 7.10.4 cannot be handed on to a fork; a fresh
        # interpreter re-runs ``coverage run ...`` and is measured.
        return "coverage.py measures the test process and is older than 7.10.4"
    return None


# -- messages between the parent and the fork server --------------------


@dataclass
class ForkRequest:
    """Fork a worker; the worker's end of its channel follows as an fd."""

    slot: int
    log_path: str
    stack_path: str
    run: int
    shuffle_seed: int | None


@dataclass
class Forked:
    pid: int


@dataclass
class ForkFailed:
    """The fork server could not fork (EAGAIN, ENOMEM); it goes on serving."""

    error: str


@dataclass
class Exited:
    pid: int
    returncode: int


# -- the parent side -----------------------------------------------------


class ForkServerGone(Exception):
    """The fork server exited or stopped answering; start workers fresh."""


class ForkedProcess:
    """A worker forked by the fork server, looked at like a ``Popen``.

    The parent does not wait for the fork: it goes on (to the migrations)
    while the fork server forks, and the pid comes with the server's next
    report. ``pid`` waits for it; ``known_pid`` does not. ``failed`` says
    why the parent gave up on the fork: the fork failed, the request was
    not sent whole, the server is gone or did not answer in time (it may
    still fork later; that worker finds its channel closed and exits).
    """

    def __init__(self, server: ForkServer) -> None:
        self._server = server
        self._pid: int | None = None
        self._deadline = time.monotonic() + FORK_TIMEOUT
        self.failed: str | None = None

    def _forked(self, pid: int | None, error: str = "") -> None:
        self._pid = pid
        if pid is None:
            self.failed = error or "the fork failed"

    def _settle(self, timeout: float) -> None:
        """Take the fork server's answer, waiting up to ``timeout`` for it;
        give up on it once the server is gone or FORK_TIMEOUT has passed
        since the request."""
        end = time.monotonic() + timeout
        wait = 0.0  # first, what has come in, however long ago
        while self._pid is None and self.failed is None:
            self._server.pump(wait)
            now = time.monotonic()
            if self._pid is not None or self.failed is not None:
                return
            if not self._server.alive:
                self.failed = "the fork server is gone"
            elif now >= self._deadline:
                # Keep the server's channel: closing it would end the
                # workers it already forked. Only stop asking it for more.
                self._server.usable = False
                self.failed = f"the fork server did not answer in {FORK_TIMEOUT:g}s"
            elif now >= end:
                return
            wait = min(0.05, end - now)

    @property
    def pid(self) -> int:
        self._settle(FORK_TIMEOUT)
        if self._pid is None:
            raise ForkServerGone(self.failed)
        return self._pid

    @property
    def known_pid(self) -> int | None:
        """The pid if the server has reported the fork; no waiting."""
        self._settle(0)
        return self._pid

    @property
    def returncode(self) -> int | None:
        if self.failed is not None:
            return FORK_FAILED
        if self._pid is None:
            return None
        return self._server.returncodes.get(self._pid)

    def poll(self) -> int | None:
        # Pump first: a server found gone by this pump is then seen by
        # _settle, which gives the fork up (else wait() took a gone server
        # for a timeout).
        self._server.pump(0)
        self._settle(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # Bounded even without a timeout: a worker killed with SIGKILL is
        # reaped at once, unless its reaper is gone too.
        limit = FORK_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + limit
        while (code := self.poll()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._server.alive:
                raise subprocess.TimeoutExpired(
                    f"worker {self._pid or '(not forked yet)'}", limit
                )
            self._server.pump(min(remaining, 0.05))
        return code


class ForkServer:
    """Forks a copy of this process to fork workers from; see the module."""

    def __init__(
        self, tests: Sequence[Any], *, failfast: bool, buffer: bool = False
    ) -> None:
        from django.db import connections

        # The copy must not share a database connection with us, nor print
        # what we have buffered a second time.
        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        self.control, child_end = channel_pair()
        try:
            pid = os.fork()
        except OSError:
            self.control.close()
            child_end.close()
            raise
        if pid == 0:  # the fork server
            code = 1
            try:
                self.control.close()
                _serve_forks(connect_child(child_end.detach()), tests, failfast, buffer)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                # Never return into the parent's stack (its finally blocks
                # would drop databases and remove the run directory).
                os._exit(code)
        child_end.close()
        self.pid = pid
        self.alive = True
        self.usable = True  # False after a fork failed or went unanswered
        self._reaped = False
        #: Asked for, in order; the server answers each request in turn.
        self._unanswered: collections.deque[ForkedProcess] = collections.deque()
        #: pid -> how a worker ended, as Popen.returncode says it
        self.returncodes: dict[int, int] = {}

    def fork_worker(self, request: ForkRequest) -> tuple[Connection, ForkedProcess]:
        """Ask for a new worker; its process and the parent's end of its
        channel. Returns at once: the fork happens while the parent goes on
        (see ``ForkedProcess``). ForkServerGone if there will be no fork
        from here (start a fresh interpreter)."""
        if not (self.alive and self.usable):
            raise ForkServerGone
        parent_end, child_end = channel_pair()
        process = ForkedProcess(self)
        # Queued before anything is sent: the server answers every request
        # it got, in order, also one this side gave up on.
        self._unanswered.append(process)
        try:
            try:
                self.control.send(request)
                send_handle(self.control, child_end.fileno(), self.pid)
            finally:
                child_end.close()
        except BaseException as exc:
            # Perhaps half sent: ask for nothing more.
            parent_end.close()
            self.usable = False
            process._forked(None, f"the request was not sent ({exc!r})")
            if isinstance(exc, OSError):
                self.pump(0)  # the pids it reported before it went
                self._gone()
                raise ForkServerGone from None
            raise
        return parent_end, process

    def pump(self, timeout: float) -> None:
        """Take in what the fork server has said, waiting up to ``timeout``."""
        if not self.alive:
            return
        try:
            if not self.control.poll(timeout):
                return
            while True:
                match self.control.recv():
                    case Forked(pid=pid) if self._unanswered:
                        self._unanswered.popleft()._forked(pid)
                    case ForkFailed(error=error) if self._unanswered:
                        # Most likely a limit (EAGAIN, ENOMEM): the rest of
                        # the run's workers are fresh interpreters.
                        self.usable = False
                        self._unanswered.popleft()._forked(None, error)
                    case Forked() | ForkFailed():
                        self.usable = False  # an answer to nothing: out of step
                    case Exited(pid=pid, returncode=code):
                        self.returncodes[pid] = code
                if not self.control.poll():
                    return
        except (EOFError, OSError):
            self._gone()

    def _gone(self) -> None:
        if self.alive:
            self.alive = False
            self.control.close()

    def close(self) -> None:
        """Stop the fork server (it ends its remaining workers) and reap it;
        safe to call more than once."""
        self._gone()
        if self._reaped:
            return
        self._reaped = True
        # Its channel closed, it ends its workers (TERMINATE_GRACE, then
        # KILL_WAIT) and exits on its own.
        end_processes(
            [PidChild(self.pid)],
            patience=TERMINATE_GRACE + KILL_WAIT + 1.0,
            grace=0.0,
            group=False,
        )


# -- the fork server -------------------------------------------------------


def _serve_forks(
    control: Connection, tests: Sequence[Any], failfast: bool, buffer: bool
) -> None:
    """Fork a worker per request and reap them; ends when the parent does."""
    os.setsid()  # a Ctrl-C at the terminal is the parent's to handle
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A worker's exit wakes the loop at once (through the pipe), so the
    # parent learns of it without polling delays.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    children: dict[int, PidChild] = {}
    calls = sys.modules.get("concurrent_runner.calls.concurrent")
    # Looked at once, here: every worker forks a call server as it starts
    # if some test of the suite makes concurrent calls.
    call_server = calls is not None and calls.forks_server_for(tests)
    try:
        while True:
            ready = multiprocessing.connection.wait([control, wake_r], timeout=1.0)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            _reap(children, control)
            if control not in ready:
                continue
            try:
                request = control.recv()
                fd = recv_handle(control)
            except (EOFError, OSError):
                return  # the parent closed its end or is gone
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(fd)
                # The answer before the channel closes: the parent must not
                # take the closed channel for a worker that died.
                if not _answer(control, ForkFailed(str(exc))):
                    return
                continue
            if pid == 0:
                code = 1
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd_ in (wake_r, wake_w):
                        os.close(fd_)
                    control.close()
                    _become_worker(fd, request, tests, failfast, buffer, call_server)
                    code = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    _clean_exit()
                    os._exit(code)
            os.close(fd)
            children[pid] = PidChild(pid)
            if not _answer(control, Forked(pid)):
                return
    finally:
        # Those left get SIGTERM, then SIGKILL, and are reaped.
        end_processes(children.values())


def _answer(control: Connection, message: Forked | ForkFailed) -> bool:
    """Send an answer; False if the parent is gone (the run ended while a
    worker was being forked: the worker is ended, not an error)."""
    try:
        control.send(message)
    except OSError:
        return False
    return True


def _reap(children: dict[int, PidChild], control: Connection) -> None:
    for pid, child in list(children.items()):
        code = child.poll()
        if code is not None:
            del children[pid]
            with contextlib.suppress(OSError):
                control.send(Exited(pid, code))


def _clean_exit() -> None:
    """What a normal exit would do in a worker, before ``os._exit``: the
    handlers inherited from the parent are not the worker's to run, so
    only these, as multiprocessing does in the processes it forks."""
    import logging
    import multiprocessing.util

    calls = sys.modules.get("concurrent_runner.calls.concurrent")
    for step in (
        getattr(calls, "_stop_server", None),  # the worker's call server
        save_forked_child,  # what coverage.py measured here, if it does
        multiprocessing.util._exit_function,  # type: ignore[attr-defined]
        logging.shutdown,
        sys.stdout.flush,
        sys.stderr.flush,
    ):
        if step is not None:
            with contextlib.suppress(Exception):
                step()


def _become_worker(
    fd: int,
    request: ForkRequest,
    tests: Sequence[Any],
    failfast: bool,
    buffer: bool,
    call_server: bool = False,
) -> None:
    """In the forked child: the same set-up a fresh worker gets, then serve."""
    from .worker import WorkerSpec, dump_stacks_on_sigusr1, serve

    os.setsid()  # its own group, ended with whatever it starts
    measure_forked_child()  # into a coverage data file of its own
    # The same marker a fresh worker has, for code that asks where it runs.
    spec = WorkerSpec(
        fd, request.slot, request.run, request.shuffle_seed, request.stack_path
    )
    os.environ[p.WORKER_ENV] = spec.dumps()
    os.set_inheritable(fd, False)  # not for what a test starts
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(os.devnull, "rb") as devnull:
        os.dup2(devnull.fileno(), 0)
    with open(request.log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    if call_server:
        # Now, while this process has no database connection and no thread.
        from ..calls.concurrent import fork_server

        fork_server(close=[fd])
    dump_stacks_on_sigusr1(request.stack_path)
    serve(connect_child(fd), tests, failfast=failfast, buffer=buffer, stdio=spec.stdio)
