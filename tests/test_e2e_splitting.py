"""End to end: a long class run as chunks on several workers (#22.1).

The ``splitclass`` app logs every fixture and test with its process id; a
seeded durations file says that its ``Chunked`` class is most of the run.
"""

from __future__ import annotations

import json
import re
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

from django.test import SimpleTestCase, tag

from .e2e import manage

APP = "splitclass.tests"
TESTS = 12
WORKERS = ("--parallel-groups", "3")
CHUNKED = re.compile(r"Chunked into (\d+)")


def seed(path: Path, *, long: tuple[str, ...] = ("Chunked",)) -> None:
    """Durations as if ``long`` classes took 1 s a test (and Chunked's
    fixtures 0.3 s), the others 0.25 s a test."""
    classes, tests = {}, {}
    for name in ("Chunked", "Whole", "WholeChild", "Serial", "Short"):
        label = f"{APP}.{name}"
        each = 1.0 if name in long else 0.25
        for i in range(TESTS):
            tests[f"{label}.test_{i:02d}"] = each
        classes[label] = TESTS * each + (0.3 if name == "Chunked" else 0.02)
    path.write_text(json.dumps({"version": 1, "classes": classes, "tests": tests}))


def read_log(path: Path) -> list[tuple[int, str, str]]:
    """(pid, event, rest) per line of the SPLIT_LOG."""
    lines = []
    for line in path.read_text().splitlines():
        pid, event, *rest = line.split()
        lines.append((int(pid), event, " ".join(rest)))
    return lines


@tag("any_database")
class SplitRunTests(SimpleTestCase):
    def test_a_long_class_runs_as_chunks_each_with_its_fixtures(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            durations = folder / "durations.json"
            seed(durations)
            log = folder / "split.log"
            env = {"DURATIONS_FILE": str(durations), "SPLIT_LOG": str(log)}
            timeline, junit = folder / "timeline.json", folder / "junit.xml"
            ours = manage(
                APP, "-v", "2", *WORKERS, "--timeline", str(timeline),
                "--junit-xml", str(junit), env=env,
            )  # fmt: skip
            self.assertEqual(ours.returncode, 0, ours.output)
            events = read_log(log)
            bars = json.loads(timeline.read_text())["units"]
            cases = ET.parse(junit).getroot().iter("testcase")
            junit_ids = Counter(f"{c.get('classname')}.{c.get('name')}" for c in cases)
            recorded = json.loads(durations.read_text())
            log.unlink()
            django = manage(
                APP, "-v", "2", "--testrunner",
                "django.test.runner.DiscoverRunner", env=env,
            )  # fmt: skip
        self.assertEqual(django.returncode, 0, django.output)
        # Every test ran once, with the outcome serial Django gives it.
        self.assertEqual((ours.ran, ours.summary), (django.ran, django.summary))
        self.assertEqual(ours.statuses(), django.statuses())
        self.assertEqual(len(ours.statuses()), 5 * TESTS)

        # The plan (-v 2) names the chunks; the first line says what was split.
        match = CHUNKED.search(ours.output)
        assert match is not None, ours.output
        chunks = int(match.group(1))
        self.assertGreaterEqual(chunks, 2)
        for n in range(1, chunks + 1):
            self.assertIn(f"{APP}.Chunked [chunk {n}/{chunks}]", ours.output)
        self.assertNotIn("Whole [chunk", ours.output)
        self.assertNotIn("Serial [chunk", ours.output)

        # Chunked: its fixtures once per chunk, each test once, and each
        # process ran its tests in the class's order.
        per_class = Counter((e, r) for _pid, e, r in events if e != "test")
        for fixture in ("setUpClass", "setUpTestData", "tearDownClass"):
            self.assertEqual(per_class[(fixture, "Chunked")], chunks, fixture)
        ran: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for pid, event, rest in events:
            if event == "test":
                name, number = rest.split()
                ran[name][pid].append(int(number))
        done = sorted(n for numbers in ran["Chunked"].values() for n in numbers)
        self.assertEqual(done, list(range(TESTS)))
        self.assertGreaterEqual(len(ran["Chunked"]), 2)  # on several workers
        for numbers in ran["Chunked"].values():
            self.assertEqual(numbers, sorted(numbers))
        # mp_split = False (also inherited) and a serial group: whole, once.
        for name in ("Whole", "WholeChild", "Serial", "Short"):
            self.assertEqual(len(ran[name]), 1, name)
            self.assertEqual(list(ran[name].values()), [list(range(TESTS))], name)
            self.assertEqual(per_class[("setUpClass", name)], 1, name)

        # Module fixtures: in each process, every test runs between a
        # setUpModule and its tearDownModule, and each set-up is torn down.
        by_pid: dict[int, list[str]] = defaultdict(list)
        for pid, event, _rest in events:
            by_pid[pid].append(event)
        for pid, sequence in by_pid.items():
            depth = 0
            for event in sequence:
                if event == "setUpModule":
                    self.assertEqual(depth, 0, sequence)
                    depth = 1
                elif event == "tearDownModule":
                    self.assertEqual(depth, 1, sequence)
                    depth = 0
                else:
                    self.assertEqual(depth, 1, (pid, sequence))
            self.assertEqual(depth, 0, sequence)

        # The timeline: chunks of one class.
        chunk_bars = [b for b in bars if b["chunk"]]
        self.assertEqual({b["label"] for b in chunk_bars}, {f"{APP}.Chunked"})
        self.assertEqual(
            sorted(b["chunk"] for b in chunk_bars),
            [f"{n}/{chunks}" for n in range(1, chunks + 1)],
        )
        self.assertEqual(sum(len(b["tests"]) for b in chunk_bars), TESTS)
        # JUnit: per test, each once.
        self.assertEqual(len(junit_ids), 5 * TESTS)
        self.assertEqual(set(junit_ids.values()), {1})
        self.assertEqual(
            sum(1 for i in junit_ids if i.startswith(f"{APP}.Chunked.")), TESTS
        )
        # Durations: one class with its tests; its fixture time (the class's
        # time minus its tests') is one chunk's 0.3 s, not the chunks' sum.
        label = f"{APP}.Chunked"
        own = [v for k, v in recorded["tests"].items() if k.startswith(label + ".")]
        self.assertEqual(len(own), TESTS)
        fixture = recorded["classes"][label] - sum(own)
        self.assertGreater(fixture, 0.25)
        self.assertLess(fixture, 0.3 * chunks - 0.1)
        self.assertNotIn(f"{label}[1/{chunks}]", recorded["classes"])

    def test_refusals_and_the_switches_keep_classes_whole(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            durations = Path(tmp) / "durations.json"
            env = {"DURATIONS_FILE": str(durations)}
            seed(durations)
            split = manage(APP, *WORKERS, "--list-groups", env=env)
            off = manage(APP, *WORKERS, "--list-groups", "--no-split", env=env)
            setting = manage(
                APP, *WORKERS, "--list-groups", env={**env, "SPLIT_CLASSES": "0"}
            )
            # When the classes that refuse are the long ones, nothing is split.
            seed(durations, long=("Whole", "WholeChild", "Serial"))
            refused = manage(APP, *WORKERS, "--list-groups", env=env)
            durations.unlink()
            unrecorded = manage(APP, *WORKERS, "--list-groups", env=env)
        for run in (split, off, setting, refused, unrecorded):
            self.assertEqual(run.returncode, 0, run.output)
        self.assertRegex(split.output, CHUNKED)
        self.assertIn(f"{APP}.Chunked [chunk 1/", split.output)
        for run in (off, setting, refused, unrecorded):
            self.assertNotIn("split into chunks", run.output)
            self.assertNotIn("[chunk", run.output)
            self.assertIn(f"{APP}.Chunked (estimate", run.output)
