"""The example project, serially and with --parallel-groups 4.

Same tests, same outcomes; and a timeline every test records of (process,
start, end, database) shows each strategy was honoured.
"""

from __future__ import annotations

import json
import tempfile
from itertools import combinations, pairwise
from pathlib import Path

from django.db import connection
from django.test import SimpleTestCase

from .e2e import example

ISOLATED = {"isolated_free", "isolated_serial"}


def _strategy(group) -> str | None:
    if group is None:
        return None
    return group[1] if isinstance(group, list) else "free"


def _name(group) -> str | None:
    if group is None:
        return None
    return group[0] if isinstance(group, list) else group


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


class ExampleSuiteTests(SimpleTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with tempfile.TemporaryDirectory() as tmp:
            timeline = Path(tmp) / "timeline.jsonl"
            cls.serial = example("-v", "2")
            cls.parallel = example(
                "-v", "2", "--parallel-groups", "4",
                env={"EXAMPLE_TIMELINE": str(timeline)},
            )  # fmt: skip
            cls.records = [
                json.loads(line) for line in timeline.read_text().splitlines()
            ]

    def test_same_tests_and_outcomes_as_serial(self):
        self.assertEqual(self.serial.returncode, 0, self.serial.output)
        self.assertEqual(self.parallel.returncode, 0, self.parallel.output)
        serial = self.serial.statuses()
        self.assertGreaterEqual(len(serial), 30)
        self.assertEqual(self.parallel.statuses(), serial)
        self.assertEqual(self.parallel.ran, self.serial.ran)
        self.assertEqual(self.parallel.summary, self.serial.summary)
        self.assertIn("Running", self.parallel.output)
        # -v 2 says which kind of worker ran.
        self.assertIn("Workers are forked from the test process.", self.parallel.output)

    def test_no_old_test_database_to_destroy_for_an_in_memory_one(self):
        # The example's SQLite test database is in memory, where Django
        # prints no such line; the runner's stand-in file is always new.
        if connection.vendor != "sqlite":
            self.skipTest("about the file standing in for in-memory SQLite")
        for run in (self.serial, self.parallel):
            self.assertIn("Creating test database for alias 'default'", run.output)
            self.assertNotIn("Destroying old test database", run.output)

    def test_isolated_groups_overlap_nothing_else(self):
        isolated = [r for r in self.records if _strategy(r["group"]) in ISOLATED]
        self.assertTrue(isolated)
        for record in isolated:
            for other in self.records:
                if other is record or not _overlap(record, other):
                    continue
                if _strategy(record["group"]) == "isolated_serial":
                    self.fail(f"{other['test']} overlapped {record['test']}")
                self.assertEqual(
                    _name(other["group"]),
                    _name(record["group"]),
                    f"{other['test']} overlapped {record['test']}",
                )

    def test_serial_groups_run_in_one_process_in_order(self):
        serial_order = list(self.serial.statuses())
        for strategy in ("serial", "isolated_serial"):
            records = [r for r in self.records if _strategy(r["group"]) == strategy]
            self.assertTrue(records, strategy)
            self.assertEqual(len({r["pid"] for r in records}), 1, records)
            by_start = sorted(records, key=lambda r: r["start"])
            for a, b in pairwise(by_start):
                self.assertLessEqual(a["end"], b["start"] + 1e-3)
            classes = list(dict.fromkeys(r["class"] for r in by_start))
            expected = list(
                dict.fromkeys(
                    test_id.split(".")[-2]
                    for test_id in serial_order
                    if test_id.split(".")[-2] in classes
                )
            )
            self.assertEqual(classes, expected)

    def test_each_worker_keeps_the_serial_order_within_a_phase(self):
        # As under Django's --parallel: a worker's tests are a subsequence
        # of the serial order (every TestCase before any TransactionTestCase).
        serial_order = {test_id: i for i, test_id in enumerate(self.serial.statuses())}
        phases: dict[tuple[int, str], list[dict]] = {}
        for record in self.records:
            strategy = _strategy(record["group"])
            phase = _name(record["group"]) if strategy in ISOLATED else "shared"
            phases.setdefault((record["pid"], phase), []).append(record)
        self.assertGreaterEqual(len(phases), 4)
        for (pid, phase), records in phases.items():
            ran = [r["test"] for r in sorted(records, key=lambda r: r["start"])]
            positions = [serial_order[test_id] for test_id in ran]
            self.assertEqual(positions, sorted(positions), (pid, phase, ran))

    def test_free_classes_spread_over_workers(self):
        free = [r for r in self.records if _strategy(r["group"]) in (None, "free")]
        self.assertGreaterEqual(len({r["pid"] for r in free}), 2)

    def test_concurrent_tests_never_share_a_database(self):
        for a, b in combinations(self.records, 2):
            if a["pid"] != b["pid"] and _overlap(a, b):
                shared = set(a["databases"].values()) & set(b["databases"].values())
                self.assertFalse(shared, f"{a['test']} and {b['test']} shared {shared}")
        names = {n for r in self.records for n in r["databases"].values()}
        self.assertGreaterEqual(len(names), 2)
