"""Worker processes, seen from the parent: start, talk, end, reap.

A worker is forked by the run's fork server (``forking``) where it can be;
otherwise it is the command that started the run (``sys.orig_argv``) started
again with ``WORKER_ENV`` set, so ``manage.py test``, ``django-admin test
--settings=...`` and a ``runtests.py`` all work unchanged. Its stdout and
stderr go to a log file in the run directory, shown when it fails to start
or dies. A ``WorkerProcess`` is only the process and its channel: what it
is doing is the run controller's to know.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..coverage_relay import child_environ
from . import protocol as p
from .endings import EndKind, WorkerEnding
from .forking import ForkedProcess, ForkRequest, ForkServer, ForkServerGone
from .processes import (
    STACK_DUMP_WAIT,
    TERMINATE_GRACE,
    Child,
    end_processes,
    spawn_with_channel,
    wait_for,
)
from .worker import WorkerSpec


def worker_argv() -> list[str]:
    return [sys.executable, *sys.orig_argv[1:]]


class WorkerProcess:
    """One worker on one slot; a replacement on the same slot is a new object."""

    def __init__(
        self,
        slot: int,
        *,
        run: int,
        shuffle_seed: int | None,
        rundir: Path,
        generation: int = 0,
        forks: ForkServer | None = None,
    ) -> None:
        self.slot = slot
        self.stack_path = rundir / f"worker-{slot}.{generation}.stack"
        self.log_path = rundir / f"worker-{slot}.{generation}.log"
        forked: tuple[Connection, Any] | None = None
        if forks is not None:
            with contextlib.suppress(ForkServerGone):
                forked = forks.fork_worker(
                    ForkRequest(
                        slot,
                        str(self.log_path),
                        str(self.stack_path),
                        run,
                        shuffle_seed,
                    )
                )
        if forked is None:

            def env_for(fd: int) -> dict[str, str]:
                spec = WorkerSpec(fd, slot, run, shuffle_seed, str(self.stack_path))
                return {
                    **os.environ,
                    p.WORKER_ENV: spec.dumps(),
                    **child_environ("worker"),
                }

            with open(self.log_path, "wb") as log:
                forked = spawn_with_channel(
                    worker_argv(), env_for, stdout=log, stderr=subprocess.STDOUT
                )
        self.conn: Connection = forked[0]
        self.process: Child = forked[1]
        self.started_at = time.monotonic()

    @property
    def known_pid(self) -> int | None:
        """The pid, or None for a fork not (yet) reported; no waiting."""
        process = self.process
        if isinstance(process, ForkedProcess):
            return process.known_pid
        return process.pid

    @property
    def never_started(self) -> bool:
        """The fork server could not fork it: there was never a process."""
        process = self.process
        return isinstance(process, ForkedProcess) and process.failed is not None

    def send(self, message: Any) -> bool:
        try:
            self.conn.send(message)
            return True
        except OSError:
            return False  # it died; the loop notices on its next read

    def ending(self) -> WorkerEnding:
        """How it ended, waiting a bounded time for it to be reaped (this
        also takes in a fork server's late answer)."""
        code = wait_for(self.process, TERMINATE_GRACE)
        process = self.process
        if isinstance(process, ForkedProcess) and process.failed is not None:
            return WorkerEnding(EndKind.FORK_FAILED, error=process.failed)
        return WorkerEnding.from_returncode(code, log_tail=self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def dump_stacks(self, timeout: float = STACK_DUMP_WAIT) -> str:
        """Ask the worker where it is (faulthandler, SIGUSR1); return the dump."""
        pid = self.known_pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(OSError):
                text = self.stack_path.read_text(errors="replace")
                # faulthandler writes thread by thread: done once it stops growing.
                if text and text == seen:
                    return text
                seen = text
        return seen

    def close(self) -> None:
        self.conn.close()


def end_workers(
    workers: list[WorkerProcess],
    *,
    patience: float = 0.0,
    grace: float = TERMINATE_GRACE,
    close: bool = True,
) -> None:
    """End ``workers`` (their process groups) and reap them, together: they
    may exit on their own for ``patience`` seconds (told to stop), then
    SIGTERM, ``grace``, SIGKILL. A fork not reported (yet) has nothing to
    signal: closing its channel ends it, and the fork server the rest."""
    end_processes(
        [w.process for w in workers if w.known_pid is not None],
        patience=patience,
        grace=grace,
    )
    if close:
        for worker in workers:
            worker.close()
