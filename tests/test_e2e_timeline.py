"""End-to-end: --timeline on real runs, and the page in a real Chromium.

Chromium is Debian's ``chromium`` package; ``.ci/run`` installs it, and in
CI (CI=true) a missing browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from itertools import combinations
from pathlib import Path

from django.test import SimpleTestCase, tag

from .e2e import example, manage
from .test_timeline import EXTERNAL, parse

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium")


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] - 1e-6 and b["start"] < a["end"] - 1e-6


@tag("any_database")
class TimelineOfTheExampleTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = Path(tempfile.mkdtemp())
        cls.run_json = example(
            "-v", "2", "--parallel-groups", "4", "--timeline", str(cls.tmp / "t.json")
        )
        cls.data = json.loads((cls.tmp / "t.json").read_text())
        cls.run_html = example(
            "--parallel-groups", "4", "--timeline", str(cls.tmp / "t.html")
        )
        cls.html = (cls.tmp / "t.html").read_text()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def test_json_matches_what_the_run_did(self):
        self.assertEqual(self.run_json.returncode, 0, self.run_json.output)
        units = self.data["units"]
        planned = int(self.run_json.output.split("Running ")[1].split(" unit")[0])
        self.assertEqual(len(units), planned)
        ran = Counter(t for u in units for t in u["tests"])
        # Every test of the run (skipped ones too) in exactly one unit.
        self.assertEqual(sum(ran.values()), len(self.run_json.statuses()))
        self.assertEqual(set(ran.values()), {1})
        self.assertEqual(set(ran), set(self.run_json.statuses()))
        self.assertEqual(self.data["workers"], 4)
        self.assertTrue({u["worker"] for u in units} <= {1, 2, 3, 4})
        self.assertEqual({u["outcome"] for u in units}, {"passed"})
        for a, b in combinations(units, 2):
            if a["worker"] == b["worker"]:
                self.assertFalse(overlap(a, b), f"{a['label']} and {b['label']}")

    def test_isolated_units_overlap_nothing_outside_their_group(self):
        units = self.data["units"]
        for unit in (u for u in units if u["strategy"].startswith("isolated")):
            for other in units:
                if other is not unit and overlap(unit, other):
                    self.assertEqual(other["group"], unit["group"])
                    self.assertNotEqual(unit["strategy"], "isolated_serial")
        self.assertEqual(
            [p["isolated"] for p in self.data["phases"]], [False, True, True]
        )

    def test_overheads_and_totals(self):
        kinds = Counter(o["kind"] for o in self.data["overheads"])
        self.assertEqual(kinds["startup"], 4)
        # A start-up bar ends when its worker was ready: before its first
        # unit, and (forked workers being ready in milliseconds) before the
        # parent could hand out anything, once the databases were cloned.
        cloned = max(
            o["end"] for o in self.data["overheads"] if o["kind"] == "databases"
        )
        for bar in (o for o in self.data["overheads"] if o["kind"] == "startup"):
            first = min(
                u["start"] for u in self.data["units"] if u["worker"] == bar["worker"]
            )
            self.assertLessEqual(bar["start"], bar["end"])
            self.assertLessEqual(bar["end"], first)
            self.assertLess(bar["end"], cloned)
        self.assertEqual(kinds["databases"], 2)  # creating, cloning
        summary = self.data["summary"]
        total = sum(u["duration"] for u in self.data["units"])
        self.assertAlmostEqual(summary["unit_total"], total, places=2)
        longest = max(u["duration"] for u in self.data["units"])
        self.assertAlmostEqual(
            summary["lower_bound"], max(total / 4, longest), places=2
        )
        self.assertGreaterEqual(summary["wall"], summary["lower_bound"])

    def test_html_is_self_contained(self):
        self.assertEqual(self.run_html.returncode, 0, self.run_html.output)
        self.assertIsNone(EXTERNAL.search(self.html))
        dom = parse(self.html)
        self.assertEqual(len(dom.with_class("lane", "worker")), 4)

    def test_rendered_in_chromium_one_bar_per_unit_one_lane_per_worker(self):
        browser = chromium()
        if browser is None:
            if os.environ.get("CI"):
                self.fail("chromium is not installed; .ci/run installs it")
            self.skipTest("chromium is not installed (apt-get install chromium)")
        profile = tempfile.mkdtemp()
        try:
            page = f"file://{self.tmp / 't.html'}"
            flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
            dumped = subprocess.run(
                [browser, *flags, "--dump-dom", page],
                capture_output=True,
                text=True,
                timeout=120,
            )
            shot = self.tmp / "t.png"
            subprocess.run(
                [
                    browser,
                    *flags,
                    "--window-size=1300,700",
                    f"--screenshot={shot}",
                    page,
                ],
                capture_output=True,
                timeout=120,
            )
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        self.assertEqual(dumped.returncode, 0, dumped.stderr)
        dom = parse(dumped.stdout)
        # The units this run planned: a class that the first run's durations
        # show to be long may now run as chunks (#22.1).
        output = self.run_html.output
        units = int(output.split("Running ")[1].split(" unit")[0])
        self.assertEqual(len(dom.with_class("bar", "unit")), units)
        self.assertEqual(len(dom.with_class("lane", "worker")), 4)
        self.assertTrue(shot.exists() and shot.stat().st_size > 10_000)


@tag("any_database")
class TimelineOfOtherRunsTests(SimpleTestCase):
    def test_in_process_run_has_one_lane(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "t.json"
            result = manage("multidb", "--timeline", str(path))
            self.assertEqual(result.returncode, 0, result.output)
            data = json.loads(path.read_text())
        self.assertEqual(data["workers"], 1)
        self.assertEqual({u["worker"] for u in data["units"]}, {1})
        self.assertEqual(
            [u["label"] for u in data["units"]],
            [f"multidb.tests.{c}" for c in (
                "AllDatabases", "AvailableApps", "ConcurrentCallsOnEveryAlias",
                "SerializedRollback",
            )],
        )  # fmt: skip
        self.assertEqual(sum(len(u["tests"]) for u in data["units"]), 7)

    def test_failed_and_crashed_units_are_marked(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "t.json"
            manage("outcomes", "faults.tests", "--parallel-groups", "2",
                   "--group-timeout", "5", "--timeline", str(path))  # fmt: skip
            units = json.loads(path.read_text())["units"]
        outcome = {}
        for unit in units:
            if outcome.get(unit["label"]) != "crashed":
                outcome[unit["label"]] = unit["outcome"]
        self.assertEqual(outcome["outcomes.tests.Passing"], "passed")
        self.assertEqual(outcome["outcomes.tests.Failing"], "failed")
        self.assertEqual(outcome["outcomes.tests.BrokenSetUpClass"], "failed")
        self.assertEqual(outcome["faults.tests.KillCrash"], "crashed")
        self.assertEqual(outcome["faults.tests.Hang"], "crashed")
