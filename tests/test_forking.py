"""The fork server, with real forks of this test process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Any
from unittest import mock

from django.db import connections
from django.test import SimpleTestCase, override_settings

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel import workers
from concurrent_runner.parallel.forking import (
    FORK_FAILED,
    ForkedProcess,
    ForkRequest,
    ForkServer,
    ForkServerGone,
    fork_refusal,
    fork_workers_enabled,
)
from concurrent_runner.parallel.processes import end_processes
from concurrent_runner.parallel.workers import WorkerProcess, end_workers

#: Seconds any single wait in these tests may take.
BOUND = 15.0


def samples() -> list[unittest.TestCase]:
    """What the forked workers run (defined here so discovery skips it)."""

    class Sample(unittest.TestCase):
        def test_pass(self) -> None:
            pass

        def test_fail(self) -> None:
            self.fail("as planned")

        def test_where(self) -> None:
            spec = json.loads(os.environ[p.WORKER_ENV])
            print(os.getpid(), os.getppid(), spec["slot"])

    return [Sample("test_pass"), Sample("test_fail"), Sample("test_where")]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class ForkServerCase(SimpleTestCase):
    """A fork server of this process, and helpers to talk to its workers."""

    def setUp(self) -> None:
        self.tests = samples()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.server = ForkServer(self.tests, failfast=False)
        self.addCleanup(self.server.close)

    def ask(self, slot: int) -> tuple[Any, Any]:
        """Ask the server for a worker; its channel and process, at once."""
        conn, process = self.server.fork_worker(
            ForkRequest(
                slot,
                str(self.tmp / f"{slot}.log"),
                str(self.tmp / f"{slot}.stack"),
                run=1,
                shuffle_seed=None,
            )
        )
        self.addCleanup(conn.close)
        return conn, process

    def fork(self, slot: int = 1) -> tuple[Any, Any]:
        conn, process = self.ask(slot)
        hello = self.receive(conn)
        self.assertIsInstance(hello, p.Hello)
        self.assertEqual(hello.pid, process.pid)
        self.assertEqual(hello.test_ids, [test.id() for test in self.tests])
        conn.send(p.Configure({}, {}, debug_sql=False))
        return conn, process

    def receive(self, conn: Any) -> Any:
        self.assertTrue(conn.poll(BOUND), "the worker said nothing")
        return conn.recv()

    def run_unit(self, conn: Any, indices: list[int]) -> list[p.TestRecord]:
        conn.send(p.RunUnit(0, indices))
        records = []
        while not isinstance(message := self.receive(conn), p.UnitDone):
            if isinstance(message, p.TestDone):
                records.append(message.record)
        return records


class ForkServerTests(ForkServerCase):
    def test_a_forked_worker_runs_units_and_reports_each_test(self) -> None:
        conn, process = self.fork()
        records = self.run_unit(conn, [0, 1])
        self.assertEqual(
            [type(o) for r in records for o in r.outcomes], [p.Success, p.Failure]
        )
        # It takes more units until told to stop, then exits cleanly.
        self.assertEqual(len(self.run_unit(conn, [2])), 1)
        conn.send(p.Stop())
        self.assertEqual(process.wait(BOUND), 0)

    def test_workers_are_children_of_the_server_with_the_worker_marker(
        self,
    ) -> None:
        seen = []
        for slot in (1, 2):
            conn, process = self.fork(slot)
            (record,) = self.run_unit(conn, [2])
            pid, parent, marked_slot = map(int, record.stdout.split())
            seen.append(pid)
            self.assertEqual(pid, process.pid)
            self.assertEqual(parent, self.server.pid)
            self.assertEqual(marked_slot, slot)
        self.assertNotIn(os.getpid(), seen)
        self.assertEqual(len(set(seen)), 2)

    def test_how_a_worker_ended_is_reported(self) -> None:
        _conn, process = self.fork()
        self.assertIsNone(process.poll())
        os.kill(process.pid, signal.SIGKILL)
        self.assertEqual(process.wait(BOUND), -signal.SIGKILL)
        _conn, process = self.fork()
        end_processes([process], grace=BOUND)
        self.assertEqual(process.returncode, -signal.SIGTERM)

    def test_closing_the_server_ends_and_reaps_every_worker(self) -> None:
        forked = [self.fork(slot)[1] for slot in (1, 2)]
        self.server.close()
        for worker in forked:
            self.assertTrue(gone(worker.pid), worker.pid)
        with self.assertRaises(ChildProcessError):
            os.waitpid(self.server.pid, os.WNOHANG)  # already reaped
        with self.assertRaises(ForkServerGone):
            self.fork()

    def test_a_parent_gone_before_the_answer_ends_the_server_quietly(self) -> None:
        # The run ended while a replacement worker was being forked (found
        # by the differential test: a BrokenPipeError's traceback printed
        # after the summary). The server ends its worker and exits 0.
        self.ask(1)
        self.server.control.close()
        deadline = time.monotonic() + BOUND
        while (waited := os.waitpid(self.server.pid, os.WNOHANG))[0] == 0:
            self.assertLess(time.monotonic(), deadline, "the server did not end")
            time.sleep(0.01)
        self.server._reaped = True
        self.assertEqual(os.waitstatus_to_exitcode(waited[1]), 0)

    def test_a_dead_server_means_fresh_interpreters(self) -> None:
        os.kill(self.server.pid, signal.SIGKILL)
        self.assertTrue(self.server.control.poll(BOUND))  # its end closed
        self.server.pump(0)
        self.assertFalse(self.server.alive)
        with self.assertRaises(ForkServerGone):
            self.fork()
        fresh = (mock.Mock(), mock.Mock(pid=12345))
        with mock.patch.object(
            workers, "spawn_with_channel", return_value=fresh
        ) as spawn:
            worker = WorkerProcess(
                1, run=1, shuffle_seed=None, rundir=self.tmp, forks=self.server
            )
        spawn.assert_called_once()
        self.assertIs(worker.process, fresh[1])


class AskingWithoutWaitingTests(ForkServerCase):
    """The parent asks for a worker and goes on; the pid comes later."""

    def stop_server(self) -> None:
        os.kill(self.server.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, self.server.pid, signal.SIGCONT)

    def test_asking_returns_before_the_fork_and_the_pid_follows(self) -> None:
        self.stop_server()  # it cannot fork until it goes on
        conn, process = self.ask(1)
        self.assertIsNone(process.poll())
        self.assertIsNone(process.failed)
        os.kill(self.server.pid, signal.SIGCONT)
        self.assertTrue(conn.poll(BOUND))
        hello = conn.recv()
        self.assertEqual(hello.pid, process.pid)
        self.assertIsNone(process.poll())  # running

    def test_a_server_that_dies_before_answering_started_no_worker(self) -> None:
        self.stop_server()
        worker = WorkerProcess(
            1, run=1, shuffle_seed=None, rundir=self.tmp, forks=self.server
        )
        self.addCleanup(worker.close)
        os.kill(self.server.pid, signal.SIGKILL)
        self.assertEqual(worker.process.wait(BOUND), FORK_FAILED)
        self.assertEqual(worker.process.failed, "the fork server is gone")
        self.assertTrue(worker.never_started)
        with self.assertRaises(ForkServerGone):
            worker.process.pid  # noqa: B018 - there is none to give
        self.assertTrue(worker.conn.poll(BOUND))
        with self.assertRaises(EOFError):
            worker.conn.recv()  # its channel went with the server
        end_workers([worker])  # nothing to end, and no error

    def test_ending_a_worker_not_yet_forked_does_not_wait_for_it(self) -> None:
        self.stop_server()
        worker = WorkerProcess(
            1, run=1, shuffle_seed=None, rundir=self.tmp, forks=self.server
        )
        started = time.monotonic()
        end_workers([worker])  # would wait FORK_TIMEOUT (30 s) for a pid
        self.assertLess(time.monotonic() - started, BOUND)
        self.assertIsNone(worker.known_pid)

    def test_a_server_that_never_answers_is_given_up_on(self) -> None:
        self.stop_server()
        with mock.patch("concurrent_runner.parallel.forking.FORK_TIMEOUT", 0.2):
            _conn, process = self.ask(1)
            with self.assertRaises(ForkServerGone):
                process.pid  # noqa: B018 - waits FORK_TIMEOUT, then gives up
        self.assertIn("did not answer", process.failed)
        self.assertEqual(process.poll(), FORK_FAILED)
        self.assertTrue(self.server.alive)
        self.assertFalse(self.server.usable)
        with self.assertRaises(ForkServerGone):
            self.ask(2)  # from here, fresh interpreters


class ServerSeenGoneWhileWaitingTests(SimpleTestCase):
    """The fork server's end is found closed by whichever look at it comes
    first; the wait for a fork it never answered ends as a failed fork,
    never as a timeout (seen in CI: TimeoutExpired after 0 s)."""

    class Server:
        """Found gone on the ``gone_at``-th look at its channel."""

        def __init__(self, gone_at: int) -> None:
            self.alive = True
            self.usable = True
            self.returncodes: dict[int, int] = {}
            self.looks = 0
            self.gone_at = gone_at

        def pump(self, timeout: float) -> None:
            self.looks += 1
            if self.looks >= self.gone_at:
                self.alive = False

    def test_whichever_look_finds_it_gone(self) -> None:
        for gone_at in range(1, 5):
            with self.subTest(gone_at=gone_at):
                process = ForkedProcess(self.Server(gone_at))  # type: ignore[arg-type]
                self.assertEqual(process.wait(BOUND), FORK_FAILED)
                self.assertEqual(process.failed, "the fork server is gone")


class ForkFailureTests(SimpleTestCase):
    def test_a_failed_fork_raises_and_leaves_no_channel_open(self) -> None:
        connections.close_all()  # ForkServer closes them; not a leak
        before = set(os.listdir("/proc/self/fd"))
        with (
            mock.patch("os.fork", side_effect=BlockingIOError(11, "no")),
            self.assertRaises(OSError),
        ):
            ForkServer([], failfast=False)
        self.assertEqual(set(os.listdir("/proc/self/fd")), before)


class FailedForkInTheServerTests(ForkServerCase):
    """The fork server's own fork fails once (EAGAIN): that worker never
    starts, the workers already running go on, and the next workers are
    fresh interpreters."""

    def setUp(self) -> None:
        real_fork = os.fork
        # The copy taken for the server keeps this patch and its count: its
        # first fork works, its second fails, the rest work.
        works = iter([True, True, False])

        def fork() -> int:
            if next(works, True):
                return real_fork()
            raise BlockingIOError(11, "Resource temporarily unavailable")

        with mock.patch("os.fork", side_effect=fork):
            super().setUp()

    def test_a_failed_fork_costs_only_that_worker(self) -> None:
        _conn, first = self.fork(1)
        conn, second = self.ask(2)
        self.assertEqual(second.wait(BOUND), FORK_FAILED)
        self.assertIn("Resource temporarily unavailable", second.failed)
        self.assertTrue(conn.poll(BOUND))
        with self.assertRaises(EOFError):
            conn.recv()  # the server closed the channel it could not hand on
        self.assertTrue(self.server.alive)
        self.assertIsNone(first.poll())
        with self.assertRaises(ForkServerGone):
            self.ask(3)
        fresh = (mock.Mock(), mock.Mock(pid=12345))
        with mock.patch.object(workers, "spawn_with_channel", return_value=fresh):
            worker = WorkerProcess(
                3, run=1, shuffle_seed=None, rundir=self.tmp, forks=self.server
            )
        self.assertIs(worker.process, fresh[1])
        self.assertFalse(worker.never_started)
        self.assertIsNone(first.poll())


class WhenToForkTests(SimpleTestCase):
    def test_by_default_on_linux(self) -> None:
        with mock.patch("sys.platform", "linux"):
            self.assertTrue(fork_workers_enabled())

    @override_settings(CONCURRENT_RUNNER_FORK_WORKERS=False)
    def test_not_when_the_setting_says_no(self) -> None:
        self.assertFalse(fork_workers_enabled())

    def test_not_where_fork_is_unsafe(self) -> None:
        with mock.patch("sys.platform", "darwin"):
            self.assertFalse(fork_workers_enabled())

    def test_not_while_another_thread_runs(self) -> None:
        release = threading.Event()
        thread = threading.Thread(target=release.wait, args=(BOUND,), name="apm-agent")
        thread.start()
        try:
            self.assertFalse(fork_workers_enabled())
            # -v 2 says why, naming the thread.
            self.assertRegex(
                fork_refusal() or "",
                r"^other threads run in the test process \(.*apm-agent",
            )
        finally:
            release.set()
            thread.join()

    def test_the_reason_is_given_in_words(self) -> None:
        with mock.patch("sys.platform", "darwin"):
            self.assertEqual(
                fork_refusal(), "workers are forked on Linux only, and this is darwin"
            )
        with override_settings(CONCURRENT_RUNNER_FORK_WORKERS=False):
            self.assertEqual(fork_refusal(), "CONCURRENT_RUNNER_FORK_WORKERS is False")
        with mock.patch(
            "concurrent_runner.parallel.forking.forks_measured", return_value=False
        ):
            self.assertEqual(
                fork_refusal(),
                "coverage.py measures the test process and is older than 7.10.4",
            )
        with mock.patch("sys.platform", "linux"):
            self.assertIsNone(fork_refusal())
