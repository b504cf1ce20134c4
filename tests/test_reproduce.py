"""concurrent_runner.reproduce, in-process: sequences and the bisection."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from concurrent_runner import reproduce
from concurrent_runner.parallel import protocol as p


def record(index: int, failed: bool = False) -> p.TestRecord:
    error = AssertionError("no")
    outcome = p.Failure((AssertionError, error, None)) if failed else p.Success()
    return p.TestRecord(index, [outcome])


class SequencesTests(unittest.TestCase):
    def test_each_failure_gets_what_its_worker_process_ran_before_it(self) -> None:
        ids = ["t.A", "t.B", "t.C", "t.D"]
        sequences = reproduce.Sequences(ids)
        sequences.worker_starting(1)
        sequences.worker_starting(2)
        sequences.test_done(1, record(0))
        sequences.test_done(2, record(1))
        sequences.test_done(1, record(2, failed=True))
        sequences.worker_starting(2)  # a replacement: a new process
        sequences.test_errored(2, 3)
        self.assertEqual(
            sequences.failures, [("t.C", ["t.A", "t.C"]), ("t.D", ["t.D"])]
        )
        with tempfile.TemporaryDirectory() as tmp:
            stale = Path(tmp) / "old.txt"
            stale.write_text("x")
            written = sequences.write(Path(tmp))
            # Only where something ran before: t.D was first in its process.
            self.assertEqual([test for test, _ in written], ["t.C"])
            self.assertEqual(reproduce.read_sequence(written[0][1]), ["t.A", "t.C"])
            self.assertFalse(stale.exists())

    def test_the_command_to_run_one_replaces_any_earlier_sequence(self) -> None:
        argv = [
            "python",
            "manage.py",
            "test",
            "app",
            "--sequence",
            "old.txt",
            "-v",
            "2",
        ]
        self.assertEqual(
            reproduce.command_with("--sequence", Path("new file.txt"), argv),
            "python manage.py test app -v 2 --sequence 'new file.txt'",
        )


class BisectTests(unittest.TestCase):
    def test_finds_the_one_that_makes_the_last_fail(self) -> None:
        sequence = [f"t{i}" for i in range(9)] + ["victim"]
        runs: list[list[str]] = []

        def fails(tests: list[str]) -> bool:
            runs.append(tests)
            return "t6" in tests

        found = reproduce.bisect(sequence, fails)
        self.assertEqual(found.culprits, ["t6"])
        self.assertIn("fails when t6 runs before it", found.verdict)
        for tests in runs:
            self.assertEqual(tests[-1], "victim")  # always last, order kept
            self.assertEqual(tests[:-1], sorted(tests[:-1], key=sequence.index))
        self.assertLessEqual(len(runs), 2 + 2 * 4)

    def test_a_test_that_fails_alone_is_said_to(self) -> None:
        found = reproduce.bisect(["a", "b", "victim"], lambda tests: True)
        self.assertEqual(found.culprits, [])
        self.assertIn("fails on its own", found.verdict)

    def test_one_that_needs_two_others_is_said_to(self) -> None:
        found = reproduce.bisect(
            ["a", "b", "c", "d", "victim"], lambda t: "a" in t and "d" in t
        )
        self.assertEqual(found.culprits, ["a", "b", "c", "d"])
        self.assertIn("both halves", found.verdict)


class ReportTests(unittest.TestCase):
    def test_a_test_fails_in_a_junit_report_or_when_missing(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "r.xml"
            path.write_text(
                '<testsuites><testsuite><testcase classname="app.T" name="ok"/>'
                '<testcase classname="app.T" name="bad"><failure message="x"/>'
                "</testcase></testsuite></testsuites>"
            )
            self.assertFalse(reproduce.failed_in_report(path, "app.T.ok"))
            self.assertTrue(reproduce.failed_in_report(path, "app.T.bad"))
            self.assertTrue(reproduce.failed_in_report(path, "app.T.missing"))
