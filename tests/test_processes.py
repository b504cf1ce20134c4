"""concurrent_runner.parallel.processes: ending and reaping child processes,
with real children forked here, each wait bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import unittest

from concurrent_runner.parallel.processes import (
    PidChild,
    end_processes,
    wait_for,
)

#: Seconds any single wait in these tests may take.
BOUND = 15.0


def fork_child(lifetime: float, *, ignore_term: bool = False) -> PidChild:
    """A child that lives ``lifetime`` seconds, then exits with 3; returns
    once its SIGTERM handler is in place (before that it would run ours)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            handler = signal.SIG_IGN if ignore_term else signal.SIG_DFL
            signal.signal(signal.SIGTERM, handler)
            os.write(ready_w, b"+")
            time.sleep(lifetime)
        finally:
            os._exit(3)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    return PidChild(pid)


class PidChildTests(unittest.TestCase):
    def test_a_child_that_exits_in_time_is_reaped_with_its_code(self) -> None:
        child = fork_child(0.05)
        self.assertEqual(wait_for(child, BOUND), 3)
        self.assertEqual(child.returncode, 3)
        with self.assertRaises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)  # already reaped

    def test_one_still_running_at_the_deadline_is_left_to_the_caller(self) -> None:
        child = fork_child(BOUND)
        self.addCleanup(end_processes, [child], grace=0)
        self.assertIsNone(wait_for(child, 0.05))
        self.assertIsNone(child.returncode)
        with self.assertRaises(subprocess.TimeoutExpired):
            child.wait(0.01)


class EndProcessesTests(unittest.TestCase):
    def test_sigterm_ends_them_together(self) -> None:
        children = [fork_child(BOUND) for _ in range(3)]
        started = time.monotonic()
        end_processes(children, grace=BOUND, group=False)
        self.assertLess(time.monotonic() - started, BOUND)
        self.assertEqual([c.returncode for c in children], [-signal.SIGTERM] * 3)

    def test_one_that_ignores_sigterm_gets_sigkill_after_the_grace(self) -> None:
        child = fork_child(BOUND, ignore_term=True)
        end_processes([child], grace=0.2, group=False)
        self.assertEqual(child.returncode, -signal.SIGKILL)

    def test_patience_lets_a_child_exit_on_its_own(self) -> None:
        child = fork_child(0.05)
        end_processes([child], patience=BOUND, group=False)
        self.assertEqual(child.returncode, 3)  # not signalled

    def test_a_popen_and_its_process_group(self) -> None:
        # The group goes too: a grandchild started by the child.
        code = (
            "import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; "
            "time.sleep(60)']); print(p.pid, flush=True); time.sleep(60)"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            start_new_session=True,
            text=True,
        )
        assert process.stdout is not None
        grandchild = int(process.stdout.readline())
        process.stdout.close()
        end_processes([process], grace=BOUND)
        self.assertEqual(process.returncode, -signal.SIGTERM)
        deadline = time.monotonic() + BOUND
        while alive(grandchild):
            if time.monotonic() > deadline:
                self.fail("the grandchild outlived its group")
            time.sleep(0.01)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
