"""call_concurrently / make_concurrent_calls / ConcurrentTestMixin, for real.

These start the call server (through the concurrent_call_wrapper command)
and fork real call processes against the test database of this run.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import unittest
from unittest import mock

from django.contrib.auth.models import Group
from django.db import connection, connections
from django.test import SimpleTestCase, TestCase, TransactionTestCase, override_settings

from concurrent_runner import (
    CallResults,
    ConcurrentCallError,
    ConcurrentTestMixin,
    WrappedError,
    call_concurrently,
    make_concurrent_calls,
)
from concurrent_runner.calls.concurrent import RemoteTraceback

from . import call_funcs

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup  # the package's own dependency


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has ended all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


class ResultTests(ConcurrentTestMixin, TransactionTestCase):
    def test_results_come_back_in_order(self):
        results = self.make_concurrent_calls(
            *[(call_funcs.add, {"a": i, "b": 100}) for i in range(6)]
        )
        self.assertIsInstance(results, CallResults)
        self.assertEqual(results, [100, 101, 102, 103, 104, 105])

    def test_each_call_is_its_own_fresh_process(self):
        pids = self.call_concurrently(5, call_funcs.pid)
        self.assertEqual(len(set(pids)), 5)
        self.assertNotIn(os.getpid(), pids)
        self.assertEqual([t.pid for t in pids.timings], list(pids))

    def test_no_state_survives_from_an_earlier_call(self):
        self.assertEqual(
            self.call_concurrently(3, call_funcs.state_marker), [False] * 3
        )
        self.assertEqual(
            self.call_concurrently(3, call_funcs.state_marker), [False] * 3
        )

    def test_lambdas_closures_and_nested_functions(self):
        base = 40

        def nested(x):
            return base + x

        self.assertEqual(self.call_concurrently(2, lambda: base + 2), [42, 42])
        self.assertEqual(self.call_concurrently(1, nested, x=1), [41])

    def test_function_by_import_path(self):
        self.assertEqual(
            self.call_concurrently(2, "tests.call_funcs:add", a=1, b=2), [3, 3]
        )

    def test_module_level_functions_work_outside_the_mixin(self):
        self.assertEqual(call_concurrently(2, call_funcs.add, a=2, b=2), [4, 4])
        self.assertEqual(make_concurrent_calls((call_funcs.add, {"a": 1, "b": 1})), [2])

    def test_calls_start_together_and_overlap(self):
        results = self.call_concurrently(4, call_funcs.sleep, seconds=0.3)
        starts = [t.start for t in results.timings]
        ends = [t.end for t in results.timings]
        self.assertLess(max(starts), min(ends), "the calls did not overlap")
        self.assertIsNotNone(results.released)
        self.assertLess(results.spread, 0.3)


class DatabaseTests(ConcurrentTestMixin, TransactionTestCase):
    def test_calls_see_what_the_test_committed_and_the_test_sees_theirs(self):
        Group.objects.create(name="from the test")
        self.assertEqual(self.call_concurrently(3, call_funcs.count_groups), [1, 1, 1])
        pks = self.make_concurrent_calls(
            *[(call_funcs.create_group, {"name": f"call {i}"}) for i in range(4)]
        )
        self.assertEqual(len(set(pks)), 4)
        self.assertEqual(Group.objects.count(), 5)

    def test_calls_use_the_callers_live_database(self):
        names = self.call_concurrently(2, call_funcs.database_names)
        mine = {a: str(connections[a].settings_dict["NAME"]) for a in connections}
        self.assertEqual(names, [mine, mine])
        self.assertIn("test", mine["default"])

    def test_calls_start_with_their_own_connections_only(self):
        Group.objects.exists()  # the test has its connection open
        self.assertEqual(
            self.call_concurrently(2, call_funcs.open_connections),
            [["default"], ["default"]],
        )

    def test_get_or_create_on_a_unique_field_gives_one_row(self):
        results = self.call_concurrently(
            10, call_funcs.get_or_create_group, name="once"
        )
        self.assertEqual(results.errors, [])
        self.assertEqual(len({pk for pk, _ in results}), 1)
        self.assertEqual(sum(created for _, created in results), 1)
        self.assertEqual(Group.objects.filter(name="once").count(), 1)


class ErrorTests(ConcurrentTestMixin, TransactionTestCase):
    def test_an_exception_is_a_wrapped_error_in_its_slot(self):
        results = self.make_concurrent_calls(
            (call_funcs.add, {"a": 1, "b": 1}),
            (call_funcs.fail, {"message": "second call failed"}),
        )
        self.assertEqual(results[0], 2)
        error = results[1]
        self.assertIsInstance(error, WrappedError)
        self.assertIsInstance(error.error, ValueError)
        self.assertEqual(str(error.error), "second call failed")
        self.assertIn('call_funcs.py", line', error.traceback)
        self.assertIn("in fail", error.traceback)
        self.assertEqual(results.errors, [error])

    def test_reraise_raises_the_original_with_the_remote_traceback(self):
        [error] = self.call_concurrently(1, call_funcs.fail, message="boom")
        with self.assertRaises(ValueError) as caught:
            error.reraise()
        self.assertIsInstance(caught.exception.__cause__, RemoteTraceback)
        self.assertIn("in fail", str(caught.exception.__cause__))

    def test_raise_errors_first_or_all(self):
        results = self.make_concurrent_calls(
            (call_funcs.fail, {"message": "one"}),
            (call_funcs.fail, {"message": "two"}),
        )
        with self.assertRaisesRegex(ValueError, "one"):
            results.raise_errors("first")
        with self.assertRaises(ExceptionGroup) as caught:
            results.raise_errors("all")
        self.assertEqual([str(e) for e in caught.exception.exceptions], ["one", "two"])
        with self.assertRaisesRegex(ValueError, "one"):
            make_concurrent_calls(
                (call_funcs.fail, {"message": "one"}), raise_errors="first"
            )

    def test_crashed_call_processes_are_errors_that_say_so(self):
        results = self.make_concurrent_calls(
            (call_funcs.exit_hard, {"code": 3}),
            (call_funcs.kill_self, {}),
            (call_funcs.segfault, {}),
            (call_funcs.add, {"a": 1, "b": 2}),
        )
        self.assertEqual(results[3], 3)
        texts = [str(r.error) for r in results[:3]]
        self.assertIn("exited with code 3", texts[0])
        self.assertIn("killed by SIGKILL", texts[1])
        self.assertIn("killed by SIGSEGV", texts[2])
        for result in results[:3]:
            self.assertIsInstance(result.error, ConcurrentCallError)
        # The crash report carries what the process printed: here
        # faulthandler's report of the segfault.
        self.assertIn("Fatal Python error: Segmentation fault", texts[2])

    def test_what_a_call_prints_is_kept_with_its_result(self):
        results = self.make_concurrent_calls(
            (call_funcs.chatty, {"word": "one"}), (call_funcs.chatty, {"word": "two"})
        )
        self.assertEqual(results, ["one", "two"])
        self.assertEqual(
            results.outputs,
            [
                "stdout says one\nstderr says one\n",
                "stdout says two\nstderr says two\n",
            ],
        )

    def test_an_unserialisable_result_is_an_error_not_none(self):
        [result] = self.call_concurrently(1, call_funcs.unserialisable_result)
        self.assertIsInstance(result, WrappedError)
        self.assertIn("cannot be serialised", str(result.error))
        self.assertIn("generator", str(result.error))

    def test_an_unserialisable_argument_is_named(self):
        with self.assertRaisesRegex(
            ConcurrentCallError, r"Argument 'seconds' of call 0 \(generator\)"
        ):
            self.call_concurrently(1, call_funcs.sleep, seconds=(x for x in []))

    @override_settings(CONCURRENT_CALL_TIMEOUT=1)
    def test_a_hung_call_is_ended_at_the_timeout(self):
        results = self.make_concurrent_calls(
            (call_funcs.sleep_ignoring_sigterm, {"seconds": 60}),
            (call_funcs.add, {"a": 1, "b": 1}),
        )
        self.assertEqual(results[1], 2)
        self.assertIsInstance(results[0], WrappedError)
        self.assertIn("did not finish within 1s", str(results[0].error))
        self.assertFalse(process_exists(results.timings[0].pid))

    def test_the_class_timeout_overrides_the_setting(self):
        class Quick(ConcurrentTestMixin, TransactionTestCase):
            concurrent_call_timeout = 0.5

            def runTest(self):
                pass

        results = Quick().call_concurrently(1, call_funcs.sleep, seconds=30)
        self.assertIn("did not finish within 0.5s", str(results[0].error))

    def test_the_class_can_raise_instead(self):
        class Raising(ConcurrentTestMixin, TransactionTestCase):
            concurrent_call_raise = "first"

            def runTest(self):
                pass

        with self.assertRaisesRegex(ValueError, "raised"):
            Raising().call_concurrently(1, call_funcs.fail, message="raised")


class MisuseTests(ConcurrentTestMixin, TransactionTestCase):
    def test_n_must_be_at_least_one(self):
        for n in (0, -1):
            with self.assertRaisesRegex(ConcurrentCallError, "needs n >= 1"):
                self.call_concurrently(n, call_funcs.pid)
            with self.assertRaisesRegex(ConcurrentCallError, "needs n >= 1"):
                call_concurrently(n, call_funcs.pid)

    def test_calls_must_be_pairs(self):
        with self.assertRaisesRegex(ConcurrentCallError, r"\(function, kwargs\) pair"):
            make_concurrent_calls(call_funcs.pid)  # type: ignore[arg-type]

    def test_an_in_memory_database_is_refused(self):
        if connection.vendor != "sqlite":
            self.skipTest("only SQLite has in-memory databases")
        with (
            mock.patch.dict(connection.settings_dict, NAME=":memory:"),
            self.assertRaisesRegex(ConcurrentCallError, "in-memory SQLite"),
        ):
            call_concurrently(1, call_funcs.pid)


class TestCaseMisuseTests(TestCase):
    def test_the_mixin_refuses_a_test_case(self):
        class Wrong(ConcurrentTestMixin, TestCase):
            def runTest(self):
                pass

        with self.assertRaisesRegex(
            ConcurrentCallError, "Make it a TransactionTestCase"
        ):
            Wrong().call_concurrently(1, call_funcs.pid)

    def test_module_functions_refuse_an_open_transaction(self):
        with self.assertRaisesRegex(ConcurrentCallError, "Use TransactionTestCase"):
            call_concurrently(1, call_funcs.pid)


class ServerTests(SimpleTestCase):
    databases = {"default"}

    def test_a_dead_server_is_replaced(self):
        from concurrent_runner.calls import concurrent as calls

        self.assertEqual(call_concurrently(1, call_funcs.add, a=1, b=1), [2])
        server = calls._current
        assert server is not None
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        self.assertEqual(call_concurrently(1, call_funcs.add, a=2, b=2), [4])
        self.assertIsNot(calls._current, server)

    def test_a_warm_batch_is_fast_enough_to_use_freely(self):
        # Not a timing assertion on a benchmark figure: a generous bound that
        # only a server that re-started per batch (or a hang) would miss.
        call_concurrently(1, call_funcs.pid)
        start = time.monotonic()
        call_concurrently(5, call_funcs.pid)
        self.assertLess(time.monotonic() - start, 5.0)


@unittest.skipUnless(hasattr(os, "fork"), "call processes are forked")
class ForkedServerTests(SimpleTestCase):
    """A call server forked from this process (as a forked worker forks one
    as it starts), and the fresh interpreter that replaces it if it is gone
    before the first call."""

    databases = {"default"}

    def setUp(self):
        from concurrent_runner.calls import concurrent as calls

        super().setUp()
        calls.stop_server()
        self.addCleanup(calls.stop_server)
        self.calls = calls

    def test_the_first_call_uses_the_forked_server(self):
        self.calls.fork_server()
        server = self.calls._current
        assert server is not None
        self.assertEqual((server.kind, server.greeted), ("forked", False))
        self.assertEqual(call_concurrently(2, call_funcs.add, a=1, b=2), [3, 3])
        # The caller's test database, not what the server was forked with.
        (names,) = call_concurrently(1, call_funcs.database_names)
        self.assertEqual(names["default"], connection.settings_dict["NAME"])
        self.assertIs(self.calls._current, server)
        self.assertTrue(server.greeted)
        self.calls.stop_server()
        self.assertIsNotNone(server.process.returncode, "reaped")

    def test_a_server_forked_while_connected_leaves_the_connection_alone(self):
        # A worker forks its server before it connects; forked from a
        # process that holds a connection, the server and its calls must
        # not use it, nor close it: a call's close ended our session
        # ("Server has gone away" on MariaDB, seen in CI).
        connection.ensure_connection()
        ours = call_funcs.session_id()
        self.calls.fork_server()
        sessions = call_concurrently(2, call_funcs.session_id)
        # The server set ours aside (on every vendor; on SQLite a close of
        # the shared connection would not show in our process).
        self.assertEqual(call_concurrently(1, call_funcs.inherited_connections), [1])
        self.assertEqual(call_funcs.session_id(), ours)  # still ours, alive
        self.assertIsInstance(Group.objects.count(), int)  # usable
        if ours is not None:
            self.assertNotIn(ours, sessions)
            self.assertEqual(len(set(sessions)), 2, sessions)

    def test_a_forked_server_gone_before_the_first_call_is_replaced(self):
        self.calls.fork_server()
        server = self.calls._current
        assert server is not None
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        self.assertEqual(call_concurrently(1, call_funcs.add, a=2, b=2), [4])
        assert self.calls._current is not None
        self.assertEqual(self.calls._current.kind, "fresh")


@unittest.skipUnless(hasattr(os, "fork"), "call processes are forked")
class ForkSafetyTests(SimpleTestCase):
    databases = {"default"}

    def test_the_callers_connection_is_not_shared(self):
        # The call closes its own connection; ours must still work after.
        Group.objects.exists()
        call_concurrently(2, call_funcs.count_groups)
        self.assertIsInstance(Group.objects.count(), int)


class SyncFromCallsTests(ConcurrentTestMixin, TransactionTestCase):
    """mp_lock and mp_message_board reach the concurrent-call processes."""

    def test_ten_calls_incrementing_under_mp_lock_lose_nothing(self):
        from concurrent_runner.calls.sync import sync_dir

        path = sync_dir() / "call-counter"
        path.unlink(missing_ok=True)
        results = self.call_concurrently(10, call_funcs.locked_increments, times=10)
        self.assertEqual(results.errors, [])
        self.assertEqual(len(set(results)), 10)
        self.assertEqual(int(path.read_text()), 100)

    def test_board_values_written_by_calls_reach_the_test(self):
        from concurrent_runner import mp_message_board

        self.make_concurrent_calls(
            *[(call_funcs.board_write, {"key": f"call-{i}"}) for i in range(3)]
        )
        self.assertEqual(len({mp_message_board[f"call-{i}"] for i in range(3)}), 3)


class ServerSyncDirTests(SimpleTestCase):
    """The call server, and so every call, gets its caller's sync directory:
    the run's, or outside a run (pytest-django) the caller's own."""

    def test_outside_a_run_the_callers_own_directory_is_handed_on(self):
        from concurrent_runner.calls import sync
        from concurrent_runner.calls.concurrent import server_command
        from concurrent_runner.environment import SYNC_ENV

        with mock.patch.dict(os.environ):
            os.environ.pop(SYNC_ENV, None)
            _argv, env = server_command()
            self.assertEqual(env[SYNC_ENV], str(sync.sync_dir()))
            self.assertNotIn(SYNC_ENV, os.environ)  # the caller's stays private

    def test_in_a_run_the_runs_directory_is_handed_on(self):
        from concurrent_runner.calls.concurrent import server_command
        from concurrent_runner.environment import SYNC_ENV

        with mock.patch.dict(os.environ, {SYNC_ENV: "/run/sync"}):
            _argv, env = server_command()
        self.assertEqual(env[SYNC_ENV], "/run/sync")
