"""Worker processes, seen from the parent: start, talk, end, reap.

A worker is forked by the run's fork server (``forking``) where it can be;
otherwise it is the command that started the run (``sys.orig_argv``) started
again with ``WORKER_ENV`` set, so ``manage.py test``, ``django-admin test
--settings=...`` and a ``runtests.py`` all work unchanged. Its stdout and
stderr go to a log file in the run directory: what a test prints travels
with the test's record instead, and the log is shown only when the worker
fails to start or dies.
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

from . import protocol as p
from .forking import ForkedProcess, ForkRequest, ForkServer, ForkServerGone
from .worker import WorkerSpec

#: Seconds a worker has to exit after SIGTERM before it gets SIGKILL.
TERMINATE_GRACE = 5.0


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
        forked: tuple[Connection, p.ChildProcess] | None = None
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
                return {**os.environ, p.WORKER_ENV: spec.dumps()}

            with open(self.log_path, "wb") as log:
                forked = p.spawn_with_channel(
                    worker_argv(), env_for, stdout=log, stderr=subprocess.STDOUT
                )
        self.conn: Connection = forked[0]
        self.process: p.ChildProcess = forked[1]
        self.started_at = time.monotonic()
        self.ready = False  # said hello
        self.retiring = False  # gave up a unit and is exiting; give it nothing
        self.index_map: dict[int, int] = {}  # parent index -> worker index
        self.reverse_map: dict[int, int] = {}
        self.unit: int | None = None
        self.unit_started = 0.0
        self.in_flight: int | None = None  # parent index of the running test
        self.import_errors: dict[str, str] = {}

    @property
    def known_pid(self) -> int | None:
        """The pid, or None for a fork not (yet) reported; no waiting."""
        process = self.process
        return process.known_pid if isinstance(process, ForkedProcess) else process.pid

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

    def how_it_ended(self) -> str:
        code = self.wait(TERMINATE_GRACE)
        if code is None:
            return "stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with code {code}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def dump_stacks(self, timeout: float = 2.0) -> str:
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

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, grace: float = TERMINATE_GRACE) -> None:
        """End the worker and its process group, and reap it (a forked one
        is reaped by the fork server; this waits a bounded time for that)."""
        # A fork not reported (yet): nothing to signal. Closing the channel
        # ends a worker forked later, and the fork server ends what is left.
        if self.known_pid is not None:
            p.end_process_group(self.process, grace)
        self.close()

    def close(self) -> None:
        self.conn.close()
