"""Starting, signalling and ending child processes, in one place.

Every wait of the runner's processes has a name here. ``end_processes`` is
the one way a child is ended: it may exit on its own for a while, then gets
SIGTERM (its whole process group: whatever it started goes too), then
SIGKILL, and is reaped, every step bounded. It takes a ``Popen``, a worker
forked by the fork server (``forking.ForkedProcess``) or a ``PidChild`` for
a process this one forked itself.

Both sides import this module (the worker, the fork server and the call
server too), so it imports nothing from either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any, Protocol

# -- the named waits, in seconds --------------------------------------------

#: From a worker's start to its hello (imports, discovery).
STARTUP_TIMEOUT = 300.0
#: After a stop (failfast, Ctrl-C), for the tests in flight to finish.
STOP_GRACE = 10.0
#: After SIGTERM, before SIGKILL.
TERMINATE_GRACE = 5.0
#: After SIGKILL, for the kernel to let us reap the process.
KILL_WAIT = 1.0
#: For the fork server to report a fork it was asked for.
FORK_TIMEOUT = 30.0
#: For a worker's stack dump (faulthandler, on SIGUSR1) to be written.
STACK_DUMP_WAIT = 2.0
#: For the call server to start (a fresh interpreter plus django.setup()).
CALL_SERVER_START_TIMEOUT = 60.0
#: For the call server to exit on its own once its channel is closed.
CALL_SERVER_EXIT_GRACE = 2.0
#: For a timed-out concurrent call, after SIGTERM, before SIGKILL.
CALL_KILL_GRACE = 1.0
#: Beyond a batch's own timeout, for the call server to end the calls and
#: answer, before the caller gives up on it.
CALL_ANSWER_MARGIN = CALL_KILL_GRACE + KILL_WAIT + 10.0
#: Between two looks at a process that is on its way out: short at first,
#: since most exit in a few milliseconds.
_FIRST_POLL, _LAST_POLL = 0.001, 0.02


class Child(Protocol):
    """What ``end_processes`` needs of a child process."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class PidChild:
    """A child this process forked itself, looked at like a ``Popen``."""

    #: The return code of a child reaped by someone else: gone, how unknown.
    UNKNOWN = 255

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: The raw wait status once reaped (``os.waitstatus_to_exitcode``).
        self.status: int | None = None
        self._lost = False

    @property
    def returncode(self) -> int | None:
        if self._lost:
            return self.UNKNOWN
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    def poll(self) -> int | None:
        if self.status is None and not self._lost:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self._lost = True  # reaped elsewhere: gone, nothing more to know
            else:
                if done:
                    self.status = status
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = wait_for(self, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
        return code


def wait_for(child: Child, timeout: float | None) -> int | None:
    """The child's return code once it exits within ``timeout``; else None.

    Polls at 1, 2, 4 ... 20 ms: a child already on its way out (the common
    case) is reaped in a few milliseconds, not a whole period later.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = _FIRST_POLL
    while (code := child.poll()) is None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        time.sleep(delay if remaining is None else min(delay, remaining))
        delay = min(delay * 2, _LAST_POLL)
    return code


def end_processes(
    children: Iterable[Child],
    *,
    patience: float = 0.0,
    grace: float = TERMINATE_GRACE,
    group: bool = True,
) -> None:
    """End ``children`` together and reap them, within bounds.

    Each may first exit on its own for ``patience`` seconds (one that was
    asked to stop, or whose channel was closed); then what is left gets
    SIGTERM and ``grace`` seconds, then SIGKILL and ``KILL_WAIT``. With
    ``group``, signals go to each child's process group.
    """
    running = [child for child in children if child.poll() is None]
    stages = ((None, patience), (signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT))
    for sig, wait in stages:
        if sig is not None:
            for child in running:
                send_signal(child.pid, sig, group=group)
        deadline = time.monotonic() + wait
        running = [
            child
            for child in running
            if wait_for(child, max(0.0, deadline - time.monotonic())) is None
        ]
        if not running:
            return


def send_signal(pid: int, sig: int, *, group: bool = True) -> None:
    """Signal ``pid``'s process group (or ``pid`` alone); never raises."""
    if group:
        try:
            os.killpg(pid, sig)
            return
        except ProcessLookupError:
            # Not yet the leader of its own group (a worker forked a moment
            # ago, before its setsid()): signal the process itself.
            pass
        except PermissionError:
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# -- channels ------------------------------------------------------------------


def channel_pair() -> tuple[Connection, socket.socket]:
    """A parent connection and the socket to hand to a child (as an fd)."""
    parent_sock, child_sock = socket.socketpair()
    parent = Connection(os.dup(parent_sock.fileno()))
    parent_sock.close()
    return parent, child_sock


def connect_child(fd: int) -> Connection:
    return Connection(fd)


def spawn_with_channel(
    argv: list[str], env_for: Callable[[int], dict[str, str]], **popen: Any
) -> tuple[Connection, subprocess.Popen[bytes]]:
    """Start ``argv`` in a session of its own, holding a private channel.

    ``env_for(fd)`` gives its environment, in which the child finds the fd
    of its end. Its own session: a Ctrl-C at the terminal reaches only us,
    and ending its process group ends whatever it started.
    """
    parent, child_sock = channel_pair()
    fd = child_sock.fileno()
    try:
        process = subprocess.Popen(
            argv,
            env=env_for(fd),
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
            **popen,
        )
    except BaseException:
        parent.close()
        raise
    finally:
        child_sock.close()
    return parent, process
