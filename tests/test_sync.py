"""mp_lock, mp_message_board and mp_trail across real processes.

Each test gets its own sync directory; helper processes are plain
``python -c`` children that import concurrent_runner.calls.sync, with every wait
bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from unittest import mock

from concurrent_runner.calls import sync
from concurrent_runner.calls.sync import SYNC_ENV, mp_lock, mp_message_board, mp_trail

from .optional import require

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60


class SyncDirTestCase(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        patcher = mock.patch.dict(os.environ, {SYNC_ENV: str(self.dir)})
        patcher.start()
        self.addCleanup(patcher.stop)

    def spawn(self, code: str, **env: str) -> subprocess.Popen:
        prelude = (
            "from concurrent_runner.calls.sync import "
            "mp_lock, mp_message_board, mp_trail\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.addCleanup(_reap, process)
        return process

    def finish(self, process: subprocess.Popen) -> str:
        output, _ = process.communicate(timeout=TIMEOUT)
        self.assertEqual(process.returncode, 0, output)
        return output

    def wait_for(self, path: Path) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not path.exists():
            self.assertLess(time.monotonic(), deadline, f"{path} never appeared")
            time.sleep(0.01)


def _reap(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


class LockTests(SyncDirTestCase):
    INCREMENT = """
        import time
        from pathlib import Path
        counter = Path({path!r})
        for _ in range({times}):
            with {lock}:
                value = int(counter.read_text())
                time.sleep(0.001)  # widen the race window
                counter.write_text(str(value + 1))
    """

    def test_run_wide_lock_loses_no_increment_under_contention(self) -> None:
        counter = self.dir / "counter"
        counter.write_text("0")
        code = self.INCREMENT.format(path=str(counter), times=20, lock="mp_lock")
        processes = [self.spawn(code) for _ in range(10)]
        for process in processes:
            self.finish(process)
        self.assertEqual(counter.read_text(), "200")

    def test_named_locks_exclude_each_other_by_name_only(self) -> None:
        counter = self.dir / "counter"
        counter.write_text("0")
        code = self.INCREMENT.format(
            path=str(counter), times=20, lock="mp_lock('payments')"
        )
        processes = [self.spawn(code) for _ in range(5)]
        # Holding another name, or the run-wide lock, blocks none of them.
        with mp_lock("other"), mp_lock:
            for process in processes:
                self.finish(process)
        self.assertEqual(counter.read_text(), "100")

    def test_a_held_lock_blocks_another_process(self) -> None:
        with mp_lock("held"):
            child = self.spawn("print(mp_lock('held').acquire(timeout=0.3))")
            self.assertEqual(self.finish(child).strip(), "False")
        child = self.spawn("print(mp_lock('held').acquire(timeout=5))")
        self.assertEqual(self.finish(child).strip(), "True")

    def test_a_holder_killed_with_sigkill_releases_the_lock(self) -> None:
        marker = self.dir / "holding"
        holder = self.spawn(
            f"""
            import time
            from pathlib import Path
            with mp_lock("fragile"):
                Path({str(marker)!r}).touch()
                time.sleep(60)
            """
        )
        self.wait_for(marker)
        lock = mp_lock("fragile")
        self.assertFalse(lock.acquire(timeout=0.2))
        holder.send_signal(signal.SIGKILL)
        holder.wait(TIMEOUT)
        self.assertTrue(lock.acquire(timeout=10))
        lock.release()

    def test_release_without_acquire_is_an_error(self) -> None:
        with self.assertRaisesRegex(RuntimeError, "not held"):
            mp_lock("never").release()

    def test_lock_names_must_be_strings(self) -> None:
        with self.assertRaises(TypeError):
            mp_lock(42)  # type: ignore[arg-type]


class BoardTests(SyncDirTestCase):
    def test_dict_operations(self) -> None:
        board = mp_message_board
        self.assertNotIn("a", board)
        board["a"] = {"nested": [1, 2]}
        self.assertEqual(board["a"], {"nested": [1, 2]})
        self.assertEqual(board.get("missing", 7), 7)
        self.assertEqual(board.setdefault("a", "ignored"), {"nested": [1, 2]})
        self.assertEqual(board.setdefault("b", 3), 3)
        board[("tuple", 1)] = "any picklable key"
        self.assertEqual(
            sorted(map(repr, board.keys())), sorted(map(repr, ["a", "b", ("tuple", 1)]))
        )
        self.assertEqual(dict(board.items())["b"], 3)
        self.assertEqual(len(board), 3)
        del board["a"]
        self.assertNotIn("a", board)
        with self.assertRaises(KeyError):
            del board["a"]
        with self.assertRaises(KeyError):
            board["a"]

    def test_values_cross_processes_at_once(self) -> None:
        mp_message_board["from_parent"] = [1, 2, 3]
        child = self.spawn(
            """
            print(mp_message_board["from_parent"])
            mp_message_board["from_child"] = {"pid": __import__("os").getpid()}
            """
        )
        self.assertEqual(self.finish(child).strip(), "[1, 2, 3]")
        self.assertEqual(mp_message_board["from_child"]["pid"], child.pid)

    def test_setdefault_keeps_one_writer_under_contention(self) -> None:
        code = "import os; print(mp_message_board.setdefault('winner', os.getpid()))"
        processes = [self.spawn(code) for _ in range(8)]
        answers = {self.finish(p).strip() for p in processes}
        self.assertEqual(len(answers), 1)
        self.assertEqual(str(mp_message_board["winner"]), answers.pop())

    def test_read_modify_write_under_the_lock_loses_nothing(self) -> None:
        code = """
            for _ in range(20):
                with mp_lock:
                    mp_message_board["n"] = mp_message_board.get("n", 0) + 1
        """
        processes = [self.spawn(code) for _ in range(6)]
        for process in processes:
            self.finish(process)
        self.assertEqual(mp_message_board["n"], 120)


class BoardKeyTests(SyncDirTestCase):
    """Keys that are equal are one key, in every process of the run."""

    def test_equal_keys_of_different_types_are_one_key(self) -> None:
        board = mp_message_board
        board[1] = "one"
        self.assertEqual(board[1.0], "one")
        self.assertEqual(board[True], "one")
        self.assertIn(1.0, board)
        board[1.0] = "replaced"
        self.assertEqual(board[1], "replaced")
        self.assertEqual(len(board), 1)
        board[(0, ("a", 2.0))] = "nested"
        self.assertEqual(board[(-0.0, ("a", 2))], "nested")
        board[frozenset({1, "x"})] = "set"
        self.assertEqual(board[frozenset({"x", 1.0})], "set")
        board[2**80] = "big"
        self.assertEqual(board[float(2**80)], "big")
        del board[True]
        self.assertNotIn(1, board)

    def test_unequal_keys_stay_apart(self) -> None:
        board = mp_message_board
        keys = ["1", b"1", 1, 1.5, None, (1,), frozenset({1}), (), frozenset()]
        keys += [("a", "b"), ("ab",), ("a", ("b",)), float("inf"), -float("inf")]
        for number, key in enumerate(keys):
            board[key] = number
        self.assertEqual([board[key] for key in keys], list(range(len(keys))))
        self.assertEqual(len(board), len(keys))

    def test_keys_that_compare_equal_only_by_chance_are_refused(self) -> None:
        import datetime
        import decimal

        for key in (
            object(),
            decimal.Decimal(1),
            datetime.date(2026, 1, 1),
            ("fine", object()),
            frozenset({("fine", datetime.time())}),
        ):
            with self.subTest(key=key), self.assertRaises(TypeError) as caught:
                mp_message_board[key] = 1
            message = str(caught.exception)
            self.assertIn("mp_message_board keys", message)
            self.assertIn("str, bytes, int, float, bool, None", message)
            with self.assertRaises(TypeError):
                key in mp_message_board  # noqa: B015
        with self.assertRaisesRegex(ValueError, "NaN"):
            mp_message_board[float("nan")] = 1
        self.assertEqual(len(mp_message_board), 0)

    def test_equal_keys_meet_across_processes_with_different_hash_seeds(self) -> None:
        words = repr(frozenset(f"word{i}" for i in range(30)))
        writer = self.spawn(
            f"""
            mp_message_board[{words}] = "the set"
            mp_message_board[1.0] = "one"
            mp_message_board[("t", frozenset({{"a", "b", "c"}}))] = "nested"
            """,
            PYTHONHASHSEED="1",
        )
        self.finish(writer)
        reader = self.spawn(
            f"""
            print(mp_message_board.get({words}))
            print(mp_message_board.get(1))
            print(mp_message_board.get(("t", frozenset({{"c", "b", "a"}}))))
            print(len(mp_message_board))
            """,
            PYTHONHASHSEED="2",
        )
        self.assertEqual(
            self.finish(reader).split("\n")[:4], ["the set", "one", "nested", "3"]
        )

    def test_equal_keys_have_equal_names_and_only_they(self) -> None:
        require(self, "hypothesis")
        from hypothesis import given, settings
        from hypothesis import strategies as st

        numbers = (
            st.integers(-3, 3)
            | st.booleans()
            | st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, float("inf"), 2.0**64])
            | st.just(2**64)
        )
        scalars = numbers | st.none() | st.sampled_from(["", "a", "1", "\udc80"])
        scalars |= st.sampled_from([b"", b"a", b"1"])
        keys = st.recursive(
            scalars,
            lambda inner: (
                st.tuples(inner, inner)
                | st.lists(inner, max_size=3).map(tuple)
                | st.frozensets(inner, max_size=3)
            ),
            max_leaves=8,
        )

        @settings(max_examples=500, database=None, deadline=None)
        @given(a=keys, b=keys)
        def check(a: object, b: object) -> None:
            self.assertEqual(a == b, sync.key_name(a) == sync.key_name(b), (a, b))

        check()


class TrailTests(SyncDirTestCase):
    CONSUMER = """
        import time
        from pathlib import Path
        here = Path({dir!r})
        with mp_trail("shared", "start") as first:
            print("first" if first else "not-first", flush=True)
        (here / "started-{n}").touch()
        # Stay inside the trail until every consumer has started.
        deadline = time.monotonic() + 30
        while len(list(here.glob("started-*"))) < {total}:
            assert time.monotonic() < deadline, "others never started"
            time.sleep(0.01)
        # The one told to leave last waits until the others have left.
        while {leave_last} and len(list(here.glob("left-*"))) < {total} - 1:
            assert time.monotonic() < deadline, "others never left"
            time.sleep(0.01)
        with mp_trail("shared", "finish") as last:
            print("last" if last else "not-last", flush=True)
        (here / "left-{n}").touch()
    """

    def consumer(
        self, n: int, total: int, leave_last: bool = False
    ) -> subprocess.Popen:
        return self.spawn(
            self.CONSUMER.format(
                dir=str(self.dir), n=n, total=total, leave_last=leave_last
            )
        )

    def test_overlapping_consumers_get_one_first_and_one_last(self) -> None:
        total = 6
        processes = [
            self.consumer(n, total, leave_last=n == total - 1) for n in range(total)
        ]
        outputs = [self.finish(p).split() for p in processes]
        self.assertEqual(sum(o[0] == "first" for o in outputs), 1, outputs)
        self.assertEqual(sum(o[1] == "last" for o in outputs), 1, outputs)
        # The one that waited for the others left last.
        self.assertEqual(outputs[-1][1], "last")

    def test_first_consumers_body_runs_before_the_others_go_on(self) -> None:
        log = self.dir / "log"
        code = f"""
            import time
            from pathlib import Path
            log = Path({str(log)!r})
            with mp_trail("setup", "start") as first:
                if first:
                    time.sleep(0.3)
                    log.write_text("ready")
                else:
                    assert log.read_text() == "ready"
            with mp_trail("setup", "finish"):
                pass
        """
        processes = [self.spawn(code) for _ in range(4)]
        for process in processes:
            self.finish(process)

    def test_a_dead_consumer_does_not_block_the_finish(self) -> None:
        with mp_trail("t", "start") as first:
            self.assertTrue(first)
        marker = self.dir / "inside"
        doomed = self.spawn(
            f"""
            import time
            from pathlib import Path
            with mp_trail("t", "start") as first:
                assert not first
            Path({str(marker)!r}).touch()
            time.sleep(60)
            """
        )
        self.wait_for(marker)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(TIMEOUT)
        with mp_trail("t", "finish") as last:
            self.assertTrue(last)

    def test_consumers_that_do_not_overlap_each_start_and_finish(self) -> None:
        for _ in range(2):
            with mp_trail("alone", "start") as first:
                self.assertTrue(first)
            with mp_trail("alone", "finish") as last:
                self.assertTrue(last)

    def test_bad_state_and_unmatched_finish(self) -> None:
        with (
            self.assertRaisesRegex(ValueError, "'start' or 'finish'"),
            mp_trail("x", "middle"),  # type: ignore[arg-type]
        ):
            pass
        with (
            self.assertRaisesRegex(RuntimeError, "without a 'start'"),
            mp_trail("never-started", "finish"),
        ):
            pass


class OutsideARunTests(unittest.TestCase):
    def test_a_private_directory_is_used_and_is_private(self) -> None:
        # Removed here: its atexit handler does not run in a forked worker.
        with mock.patch.dict(os.environ), mock.patch.object(sync, "_private", None):
            os.environ.pop(SYNC_ENV, None)
            with mp_lock:
                mp_message_board["k"] = 1
            self.assertEqual(mp_message_board["k"], 1)
            folder = sync.sync_dir()
            self.addCleanup(shutil.rmtree, folder, True)
            self.assertEqual(folder.stat().st_mode & 0o777, 0o700)
            del mp_message_board["k"]
