"""The call server: forks clean call processes on demand.

Started once per test process, through the ``concurrent_call_wrapper``
command, it sets Django up and never opens a database connection, so every
process it forks starts clean: no inherited connection, no state from an
earlier call, and in milliseconds instead of the ~0.5 s a fresh interpreter
costs.

For each batch it forks one child per call. A child takes the caller's
database settings, connects, says it is ready, and blocks on the batch's
"go" pipe; when all are ready the server closes that pipe and every child
starts at once. Function, arguments and results stay dill bytes here: only
the children and the caller unpickle them.

This module imports nothing from the parent side of the runner.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..coverage_relay import (
    measure_forked_child,
    measure_fresh_child,
    save_forked_child,
)
from ..environment import SERVER_ENV
from ..parallel.processes import CALL_KILL_GRACE, PidChild, end_processes

#: Seconds a call process yields its core after the call; see _run_call.
POST_CALL_PAUSE = 0.002

_READY, _RESULT = b"R", b"D"


# -- messages (caller <-> server) --------------------------------------------


@dataclass
class Batch:
    payloads: list[bytes]  # dill of (func, kwargs), one per call
    databases: dict[str, dict[str, Any]]  # alias -> the caller's live settings
    connect: list[str]  # aliases each call connects to before the barrier
    timeout: float
    modules: list[str] = field(default_factory=list)  # to import before forking
    # alias -> {connection method: Django's message}: the aliases the calling
    # test may not use, made to fail the same way in each call (forbidden.py)
    forbidden: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class CallOutcome:
    """What became of one call. ``status``: ok, error, crashed, timeout."""

    status: str
    payload: bytes | None = None  # dill of the value (ok) or exception (error)
    text: str = ""  # remote traceback, or what went wrong
    pid: int = 0
    start: float | None = None
    end: float | None = None
    output: str = ""  # what the call's process wrote to stdout and stderr


@dataclass
class BatchDone:
    outcomes: list[CallOutcome]
    released: float | None = None  # when the barrier opened


@dataclass
class ServerReady:
    pid: int


# -- the child: one call ---------------------------------------------------


def _frame(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!Q", len(body)) + body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _run_call(payload: bytes, batch: Batch, go: int, out: int) -> None:
    """In the forked child: connect, wait for go, call, report. Never returns."""
    import dill
    import tblib.pickling_support
    from django.db import connections

    tblib.pickling_support.install()
    measure_forked_child()  # before the barrier, so the calls start together
    outcome = CallOutcome("error", pid=os.getpid())
    try:
        from .forbidden import forbid

        forbid(batch.forbidden)
        for alias, settings_dict in batch.databases.items():
            connections[alias].settings_dict.update(settings_dict)
        for alias in batch.connect:
            connections[alias].ensure_connection()
        func, kwargs = dill.loads(payload)
        if isinstance(func, str):
            func = _import_path(func)
    except BaseException as exc:
        outcome.text = "".join(traceback.format_exception(exc))
        outcome.payload = _dump_error(exc)
        _flush_output()
        _write_all(out, _frame(_READY))
        _write_all(out, _frame(_RESULT, dill.dumps(outcome)))
        _exit(0)
    _write_all(out, _frame(_READY))
    os.read(go, 1)  # blocks until the server closes the pipe: the barrier
    outcome.start = time.time()
    try:
        value = func(**kwargs)
    except BaseException as exc:
        outcome.end = time.time()
        time.sleep(POST_CALL_PAUSE)
        outcome.text = "".join(traceback.format_exception(exc))
        outcome.payload = _dump_error(exc)
    else:
        outcome.end = time.time()
        # With more calls than cores, our bookkeeping below (pickling, closing
        # the connection, exiting) would hold a core that another released
        # call is waiting for; step aside first so the calls start together.
        time.sleep(POST_CALL_PAUSE)
        try:
            outcome.payload = dill.dumps(value, recurse=True)
            outcome.status = "ok"
        except Exception as exc:
            outcome.text = (
                f"The call returned {type(value).__qualname__!r}, which cannot be "
                f"serialised with dill: {exc!r}"
            )
            outcome.payload = _dump_error(TypeError(outcome.text))
    for alias in connections:
        with contextlib.suppress(Exception):
            connections[alias].close()
    _flush_output()  # os._exit below would drop what stdout still buffers
    _write_all(out, _frame(_RESULT, dill.dumps(outcome)))
    _exit(0)


def _exit(code: int) -> None:
    """End a call process (never returns), saving what coverage.py measured
    in it, if it does: after the result, so the caller is not kept waiting."""
    save_forked_child()
    os._exit(code)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _import_path(path: str) -> Any:
    import importlib

    module_name, _, name = path.partition(":")
    if not name:
        raise ValueError(f"{path!r} is not a 'package.module:function' path")
    target: Any = importlib.import_module(module_name)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def _dump_error(exc: BaseException) -> bytes | None:
    import dill

    try:
        data = dill.dumps(exc)
        dill.loads(data)
        return data
    except Exception:
        return None  # the caller rebuilds it from the text


# -- the server: one batch at a time ------------------------------------------


#: The most of a call's output that is kept (its end, where errors are).
OUTPUT_LIMIT = 64 * 1024


@dataclass
class _Child:
    index: int
    pid: int
    fd: int
    output: Any  # an unlinked temporary file holding its stdout and stderr
    buffer: bytearray = field(default_factory=bytearray)
    ready: bool = False
    outcome: CallOutcome | None = None
    eof: bool = False
    status: int = 0  # its wait status, once reaped


def _read_frames(child: _Child) -> None:
    try:
        data = os.read(child.fd, 65536)
    except OSError:
        data = b""
    if not data:
        child.eof = True
        return
    child.buffer += data
    while len(child.buffer) >= 9:
        kind = bytes(child.buffer[:1])
        (size,) = struct.unpack("!Q", child.buffer[1:9])
        if len(child.buffer) < 9 + size:
            return
        body = bytes(child.buffer[9 : 9 + size])
        del child.buffer[: 9 + size]
        if kind == _READY:
            child.ready = True
        elif kind == _RESULT:
            import dill

            child.outcome = dill.loads(body)


def _preload(modules: list[str] = ()) -> None:  # type: ignore[assignment]
    """Import in the server what every child would otherwise import itself:
    forked children then start with it, and a batch takes milliseconds."""
    import importlib

    import dill  # noqa: F401
    import django.test.testcases  # noqa: F401 - for forbid()
    import tblib.pickling_support  # noqa: F401
    from django.db import connections

    for alias in connections:
        connections[alias]  # loads the backend and its driver; connects nothing
    for name in modules:
        if name not in sys.modules:
            with contextlib.suppress(Exception):  # the child will report it
                importlib.import_module(name)
    # Children share the server's memory copy-on-write; a collection in a
    # child would touch (and copy) every page. Keep what exists out of GC.
    gc.collect()
    gc.freeze()


def run_batch(batch: Batch, control: Connection) -> BatchDone:
    _preload(batch.modules)
    go_read, go_write = os.pipe()
    children: list[_Child] = []
    for index, payload in enumerate(batch.payloads):
        read_end, write_end = os.pipe()
        output = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed in _read_output
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.close(go_write)
                os.close(read_end)
                for other in children:
                    os.close(other.fd)
                    other.output.close()
                control.close()
                os.dup2(output.fileno(), 1)
                os.dup2(output.fileno(), 2)
                # Both streams share one file: line-buffer stdout like stderr
                # so what the call prints keeps its order.
                with contextlib.suppress(Exception):
                    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                gc.disable()  # a call lives briefly; see _preload
                _run_call(payload, batch, go_read, write_end)
            finally:
                _exit(70)
        os.close(write_end)
        children.append(_Child(index, pid, read_end, output))
    os.close(go_read)
    deadline = time.monotonic() + batch.timeout
    released = None
    try:
        # Phase 1: every child connects and says ready (or fails/dies).
        _pump(children, deadline, lambda c: c.ready or c.eof, control)
        released = time.time()
        os.close(go_write)
        go_write = -1
        # Phase 2: every child reports (or dies, or runs out of time).
        _pump(children, deadline, lambda c: c.eof, control)
    finally:
        if go_write != -1:
            os.close(go_write)
        _end_children(children)
    outcomes = [_outcome_of(child, batch) for child in children]
    for child, outcome in zip(children, outcomes, strict=True):
        outcome.output = _read_output(child.output)
    return BatchDone(outcomes, released)


def _read_output(file: Any) -> str:
    with file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - OUTPUT_LIMIT))
        return file.read().decode(errors="replace")


def _pump(
    children: list[_Child], deadline: float, done: Any, control: Connection
) -> None:
    while True:
        waiting = [c for c in children if not done(c)]
        if not waiting:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            return
        readable, _, _ = select.select(
            [c.fd for c in waiting] + [control], [], [], left
        )
        if control in readable or control.fileno() in readable:
            # The caller went away (or wrote out of turn): give up the batch.
            with contextlib.suppress(EOFError, OSError):
                if control.poll():
                    control.recv()
            raise EOFError("caller gone")
        for child in waiting:
            if child.fd in readable:
                _read_frames(child)


def _end_children(children: list[_Child]) -> None:
    """SIGTERM what still runs, SIGKILL after a grace period, reap all."""
    processes = {child.pid: PidChild(child.pid) for child in children}
    end_processes(processes.values(), grace=CALL_KILL_GRACE, group=False)
    for child in children:
        os.close(child.fd)
        child.status = processes[child.pid].status or 0


def _outcome_of(child: _Child, batch: Batch) -> CallOutcome:
    if child.outcome is not None:
        return child.outcome
    status = child.status
    if not child.eof:
        return CallOutcome(
            "timeout",
            text=f"The call did not finish within {batch.timeout:g}s; its process "
            f"was ended (SIGTERM, then SIGKILL).",
            pid=child.pid,
        )
    if os.WIFSIGNALED(status):
        how = f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        how = f"exited with code {os.WEXITSTATUS(status)}"
    return CallOutcome(
        "crashed",
        text=f"The call's process {how} before it reported a result.",
        pid=child.pid,
    )


#: The database connections a forked server found open: the sessions of the
#: process it was forked from. Held here until the server's ``os._exit``,
#: never used, closed or collected: any of these would end the session
#: under its owner (a close sends the server a goodbye on the shared socket).
_INHERITED: list[Any] = []


def forget_inherited_connections() -> None:
    """Give every alias a new, unconnected connection, keeping the ones this
    process was forked with (see ``_INHERITED``). A worker forks its call
    server before it connects; forked from a process that holds one (a test
    that forks a server itself), the calls would otherwise run on, and then
    close, its connection. Only this thread's connections are seen: those
    of other threads, and the idle connections of a PostgreSQL pool
    (``OPTIONS["pool"]``), are not; no worker has either when it forks."""
    from django.db import connections

    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is not None:
            _INHERITED.append(wrapper)
            connections[wrapper.alias] = connections.create_connection(wrapper.alias)


def serve(control: Connection) -> None:
    """Answer batches until the caller closes the connection."""
    forget_inherited_connections()
    _preload()
    control.send(ServerReady(os.getpid()))
    while True:
        try:
            batch = control.recv()
        except (EOFError, OSError):
            return
        try:
            done = run_batch(batch, control)
        except EOFError:
            return
        control.send(done)


def serve_from_environ() -> None:
    fd = int(os.environ[SERVER_ENV])
    control = Connection(fd)
    # The server's own stdin is useless to calls; keep signals default so the
    # caller can end it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    measure_fresh_child()  # before the calls' modules are imported
    try:
        serve(control)
    finally:
        control.close()
        sys.stdout.flush()
