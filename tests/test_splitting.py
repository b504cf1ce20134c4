"""Splitting a long class into chunks (planning.splitting), in-process: when
it is decided, what the chunks are, and what a split run records."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from django.test import SimpleTestCase, TestCase

from concurrent_runner.errors import ConfigurationError
from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.controller import TestInfo
from concurrent_runner.planning import durations, splitting
from concurrent_runner.planning.groups import Strategy, Unit, build_units, read_split
from concurrent_runner.planning.plan import make_plan
from concurrent_runner.planning.splitting import (
    CHUNK_OVERHEAD,
    chunk_bounds,
    fixture_time,
    split_long_classes,
    tests_by_class,
)
from concurrent_runner.reports.timeline import Bar, Timeline, short_name, summarise
from tests.test_controller import make

LONG = "app.tests.Long"


def suite_e(
    *,
    fixture: float = 0.05,
    long_strategy: Strategy = Strategy.FREE,
    group: str | None = None,
) -> tuple[list[Unit], list[float], list[str], dict[str, float], dict[str, float]]:
    """Bench suite (e): 30 one-test classes of 0.1 s, then a class of 40
    tests of 0.075 s with ``fixture`` seconds of class fixtures; as units,
    estimates, test ids and the durations file's two sections."""
    units, ids = [], []
    classes: dict[str, float] = {}
    tests: dict[str, float] = {}
    for i in range(30):
        label = f"app.tests.Short{i:02d}"
        units.append(Unit(label, None, Strategy.FREE, [label], [len(ids)]))
        ids.append(f"{label}.test_it")
        classes[label] = 0.1
        tests[ids[-1]] = 0.1
    long = Unit(LONG, group, long_strategy, [LONG], [])
    for i in range(40):
        long.indices.append(len(ids))
        ids.append(f"{LONG}.test_{i:02d}")
        tests[ids[-1]] = 0.075
    classes[LONG] = fixture + 40 * 0.075
    units.append(long)
    estimates = [classes[u.classes[0]] for u in units]
    return units, estimates, ids, classes, tests


class DecisionTests(unittest.TestCase):
    def test_the_long_class_of_suite_e_is_split_and_the_plan_shortened(self) -> None:
        units, estimates, ids, classes, tests = suite_e()
        before = make_plan(units, estimates, 4).estimate
        splits = split_long_classes(
            units, estimates, ids, classes=classes, tests=tests, workers=4
        )
        after = make_plan(splits.units, splits.estimates, 4).estimate
        count = splits.chunks[LONG]
        self.assertGreaterEqual(count, 2)
        self.assertLessEqual(count, 4)
        self.assertAlmostEqual(before, 3.05)
        # Near the bound with chunks: (6 s + fixtures repeated) / 4 workers.
        self.assertLess(after, 0.6 * before)
        chunks = [u for u in splits.units if u.chunk is not None]
        self.assertEqual(
            [u.chunk for u in chunks], [(n, count) for n in range(1, count + 1)]
        )
        self.assertEqual({u.strategy for u in chunks}, {Strategy.FREE})
        self.assertEqual([u.classes for u in chunks], [[LONG]] * count)
        # Every test in exactly one chunk, each chunk in the class's order,
        # the chunks one after the other.
        self.assertEqual([i for u in chunks for i in u.indices], units[-1].indices)
        # Each chunk pays the class's fixtures once more.
        for chunk, estimate in zip(chunks, splits.estimates[30:], strict=True):
            self.assertAlmostEqual(
                estimate, 0.05 + 0.075 * len(chunk.indices) + CHUNK_OVERHEAD
            )
        self.assertEqual(len({u.key for u in splits.units}), len(splits.units))
        self.assertIn("Long into", splits.summary())

    def test_each_worker_still_runs_its_share_in_serial_order(self) -> None:
        units, estimates, ids, classes, tests = suite_e()
        splits = split_long_classes(
            units, estimates, ids, classes=classes, tests=tests, workers=4
        )
        plan = make_plan(splits.units, splits.estimates, 4)
        workers_with_chunks = set()
        for queue in plan.phases[0].queues():
            order = [i for unit in queue for i in splits.units[unit].indices]
            self.assertEqual(order, sorted(order))
            if any(splits.units[u].chunk for u in queue):
                workers_with_chunks.add(id(queue))
        self.assertEqual(len(workers_with_chunks), splits.chunks[LONG])

    def test_without_durations_nothing_is_split(self) -> None:
        units, estimates, ids, classes, tests = suite_e()
        for recorded_classes, recorded_tests in ({}, tests), (classes, {}), ({}, {}):
            splits = split_long_classes(
                units,
                estimates,
                ids,
                classes=recorded_classes,
                tests=recorded_tests,
                workers=4,
            )
            self.assertEqual(splits.units, units)
            self.assertEqual(splits.chunks, {})

    def test_a_class_whose_tests_were_never_timed_is_not_split(self) -> None:
        units, estimates, ids, classes, tests = suite_e()
        tests = {k: v for k, v in tests.items() if not k.startswith(LONG)}
        splits = split_long_classes(
            units, estimates, ids, classes=classes, tests=tests, workers=4
        )
        self.assertEqual(splits.chunks, {})

    def test_one_worker_splits_nothing(self) -> None:
        units, estimates, ids, classes, tests = suite_e()
        splits = split_long_classes(
            units, estimates, ids, classes=classes, tests=tests, workers=1
        )
        self.assertEqual(splits.units, units)

    def test_no_split_where_the_fixtures_cost_more_than_it_saves(self) -> None:
        # On 2 workers: 3 s of setUpTestData and 3 s of tests beside 3 s of
        # short classes; two chunks (4.5 s each) and the short classes fill
        # both workers for as long as the class takes whole.
        units, estimates, ids, classes, tests = suite_e(fixture=3.0)
        splits = split_long_classes(
            units, estimates, ids, classes=classes, tests=tests, workers=2
        )
        self.assertEqual(splits.chunks, {})
        self.assertEqual(splits.estimates, estimates)
        # With fewer tests beside it, the same class is worth splitting.
        few = split_long_classes(
            units[25:], estimates[25:], ids, classes=classes, tests=tests, workers=2
        )
        self.assertEqual(few.chunks, {LONG: 2})

    def test_no_split_where_the_class_is_not_on_the_critical_path(self) -> None:
        # 60 one-test classes of 0.1 s and a class of 3 x 0.1 s: 4 workers
        # are busy 1.575 s each whether or not it is split.
        units, ids, classes, tests = [], [], {}, {}
        for i in range(60):
            label = f"app.tests.S{i:02d}"
            units.append(Unit(label, None, Strategy.FREE, [label], [i]))
            ids.append(f"{label}.test_it")
            classes[label] = tests[ids[-1]] = 0.1
        units.append(Unit(LONG, None, Strategy.FREE, [LONG], [60, 61, 62]))
        for i in range(3):
            ids.append(f"{LONG}.test_{i}")
            tests[ids[-1]] = 0.1
        classes[LONG] = 0.3
        estimates = [classes[u.classes[0]] for u in units]
        splits = split_long_classes(
            units, estimates, ids, classes=classes, tests=tests, workers=4
        )
        self.assertEqual(splits.chunks, {})

    def test_a_plan_at_its_floor_is_planned_once(self) -> None:
        # 400 classes of 10 tests, none much longer than the others: the
        # plan is within MIN_GAIN of its work over the workers, so no split
        # is tried (a large suite is planned in the time of one plan).
        units, ids, classes, tests = [], [], {}, {}
        for c in range(400):
            label = f"app.tests.C{c:03d}"
            unit = Unit(label, None, Strategy.FREE, [label], [])
            for t in range(10):
                unit.indices.append(len(ids))
                ids.append(f"{label}.test_{t}")
                tests[ids[-1]] = 0.1 + (c % 7) * 0.01
            classes[label] = 0.05 + sum(tests[ids[i]] for i in unit.indices)
            units.append(unit)
        estimates = [classes[u.classes[0]] for u in units]
        with mock.patch.object(splitting, "make_plan", wraps=make_plan) as planned:
            splits = split_long_classes(
                units, estimates, ids, classes=classes, tests=tests, workers=8
            )
        self.assertEqual(splits.chunks, {})
        self.assertEqual(planned.call_count, 1)

    def test_serial_groups_are_never_split(self) -> None:
        for strategy in (Strategy.SERIAL, Strategy.ISOLATED_SERIAL):
            with self.subTest(strategy=strategy):
                units, estimates, ids, classes, tests = suite_e(
                    long_strategy=strategy, group="g"
                )
                units[-1].key = "group:g"
                splits = split_long_classes(
                    units, estimates, ids, classes=classes, tests=tests, workers=4
                )
                self.assertEqual(splits.chunks, {})
                self.assertEqual(splits.units, units)

    def test_an_isolated_free_class_may_be_split_in_its_phase(self) -> None:
        units, estimates, ids, classes, tests = suite_e(
            long_strategy=Strategy.ISOLATED_FREE, group="iso"
        )
        splits = split_long_classes(
            units, estimates, ids, classes=classes, tests=tests, workers=4
        )
        self.assertGreaterEqual(splits.chunks[LONG], 2)
        plan = make_plan(splits.units, splits.estimates, 4)
        self.assertEqual(plan.phases[1].name, "isolated_free group 'iso'")
        self.assertGreater(plan.phases[1].concurrency, 1)

    def test_long_classes_in_two_phases_are_both_split(self) -> None:
        # A long shared class and a long isolated_free class (alone in its
        # group): each phase is held up by its own class.
        units, estimates, ids, classes, tests = suite_e()
        label = "app.tests.Iso"
        iso = Unit(label, "iso", Strategy.ISOLATED_FREE, [label], [])
        for i in range(20):
            iso.indices.append(len(ids))
            ids.append(f"{label}.test_{i:02d}")
            tests[ids[-1]] = 0.1
        classes[label] = 2.05
        splits = split_long_classes(
            [*units, iso],
            [*estimates, 2.05],
            ids,
            classes=classes,
            tests=tests,
            workers=4,
        )
        self.assertEqual(set(splits.chunks), {LONG, label})
        plan = make_plan(splits.units, splits.estimates, 4)
        self.assertEqual(len(plan.phases), 2)
        self.assertGreater(plan.phases[1].concurrency, 1)

    def test_a_refusing_class_is_never_split(self) -> None:
        units, estimates, ids, classes, tests = suite_e()
        splits = split_long_classes(
            units,
            estimates,
            ids,
            classes=classes,
            tests=tests,
            workers=4,
            refused={LONG},
        )
        self.assertEqual(splits.chunks, {})

    def test_chunks_balance_the_tests_times(self) -> None:
        self.assertEqual(chunk_bounds([1.0] * 10, 3), [(0, 3), (3, 7), (7, 10)])
        self.assertEqual(chunk_bounds([5.0, 1, 1, 1, 1, 1], 2), [(0, 1), (1, 6)])
        # Never an empty chunk, even when one test is most of the time.
        self.assertEqual(chunk_bounds([100.0, 1, 1], 3), [(0, 1), (1, 2), (2, 3)])

    def test_the_fixture_time_is_the_class_minus_its_tests(self) -> None:
        totals = tests_by_class(
            {"a.B.test_1": 1.0, "a.B.test_2": 2.0, "a.B.Inner.test_1": 7.0}
        )
        self.assertEqual(totals, {"a.B": 3.0, "a.B.Inner": 7.0})
        self.assertEqual(fixture_time("a.B", {"a.B": 3.5}, totals), 0.5)
        self.assertEqual(fixture_time("a.B", {"a.B": 2.0}, totals), 0.0)
        self.assertIsNone(fixture_time("a.C", {"a.C": 2.0}, totals))
        self.assertIsNone(fixture_time("a.B", {}, totals))


class MpSplitTests(SimpleTestCase):
    def test_mp_split_is_inherited_and_checked(self) -> None:
        class Whole(TestCase):
            mp_split = False

            def test_a(self) -> None: ...

        class Child(Whole):
            pass

        class Again(Child):
            mp_split = True

        self.assertFalse(read_split(Whole))
        self.assertFalse(read_split(Child))
        self.assertTrue(read_split(Again))
        self.assertTrue(read_split(TestCase))

    def test_a_bad_mp_split_fails_before_any_test_runs(self) -> None:
        class Bad(TestCase):
            mp_split = "no"

            def test_a(self) -> None: ...

        with self.assertRaisesMessage(ConfigurationError, "mp_split is 'no'"):
            build_units([Bad("test_a")])


class RecordingTests(unittest.TestCase):
    """A split class is recorded as one class with its tests."""

    def test_a_split_class_is_recorded_with_its_fixtures_once(self) -> None:
        tests = [TestInfo(f"{LONG}.test_{i}", LONG, "app.tests") for i in range(4)]
        whole = Unit(LONG, None, Strategy.FREE, [LONG], [0, 1, 2, 3])
        chunks = [
            Unit(f"{LONG}[1/2]", None, Strategy.FREE, [LONG], [0, 1], (1, 2)),
            Unit(f"{LONG}[2/2]", None, Strategy.FREE, [LONG], [2, 3], (2, 2)),
        ]
        controller, *_ = make(workers=2, tests=tests, units=chunks)
        controller.dispatch()
        for slot, unit in ((1, 0), (2, 1)):
            for index in chunks[unit].indices:
                controller.test_started(slot, index)
                controller.test_done(slot, p.TestRecord(index, [p.Success()], 1.0))
        # Each chunk: 2 s of tests and 0.5 s (then 0.7 s) of fixtures.
        controller.unit_done(1, 0, {LONG: 2.5}, [])
        controller.unit_done(2, 1, {LONG: 2.7}, [])
        self.assertEqual(controller.measured_tests, {t.id: 1.0 for t in tests})
        self.assertAlmostEqual(controller.measured[LONG], 4.6)
        self.assertIsNone(whole.chunk)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "d.json"
            durations.save(path, controller.measured, controller.measured_tests)
            data = json.loads(path.read_text())
            self.assertEqual(data["classes"], {LONG: 4.6})
            self.assertEqual(len(data["tests"]), 4)
            # Read back, the fixture time is one chunk's (their mean), not
            # their sum.
            totals = tests_by_class(durations.load_both(path)[1])
            self.assertAlmostEqual(
                fixture_time(LONG, durations.load(path), totals) or 0.0, 0.6
            )

    def test_a_whole_class_is_recorded_as_measured(self) -> None:
        controller, *_ = make()
        controller.dispatch()
        controller.test_started(1, 0)
        controller.test_done(1, p.TestRecord(0, [p.Success()], 0.25))
        controller.unit_done(1, 0, {"app.tests.Big": 1.5}, [])
        self.assertEqual(controller.measured, {"app.tests.Big": 1.5})
        self.assertEqual(controller.measured_tests, {"app.tests.Big.test_0": 0.25})

    def test_a_tests_share_of_its_class_is_what_is_recorded(self) -> None:
        # The worker's shares (start to next start) replace the tests' own
        # times, so that the class's time minus its tests' is its fixtures.
        controller, *_ = make()
        controller.dispatch()
        for index in (0, 1, 2):
            controller.test_started(1, index)
            controller.test_done(1, p.TestRecord(index, [p.Success()], 0.25))
        controller.unit_done(1, 0, {"app.tests.Big": 1.5}, [], {0: 0.4, 1: 0.4, 2: 0.3})
        self.assertEqual(
            controller.measured_tests,
            {"app.tests.Big.test_0": 0.4, "app.tests.Big.test_1": 0.4,
             "app.tests.Big.test_2": 0.3},
        )  # fmt: skip

    def test_the_durations_file_keeps_tests_beside_classes(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "d.json"
            durations.save(path, {"a.B": 2.0}, {"a.B.test_1": 0.5})
            durations.save(path, {"a.C": 1.0}, {"a.B.test_1": 0.75, "a.C.t": 1})
            self.assertEqual(durations.load(path), {"a.B": 2.0, "a.C": 1.0})
            self.assertEqual(
                durations.load_both(path)[1], {"a.B.test_1": 0.75, "a.C.t": 1.0}
            )
            other = Path(tmp) / "shard.json"
            durations.save(other, {"a.D": 3.0}, {"a.D.test_1": 2.5})
            target = Path(tmp) / "merged.json"
            durations.merge(target, [path, other])
            self.assertEqual(durations.load_both(target)[1]["a.D.test_1"], 2.5)
            self.assertEqual(len(durations.load_both(target)[1]), 3)
            # A file without tests (an older one) still loads.
            durations.write(path, {"a.B": 2.0})
            self.assertEqual(durations.load_both(path)[1], {})
            self.assertEqual(durations.load(path), {"a.B": 2.0})


class TimelineTests(unittest.TestCase):
    def test_chunks_show_as_chunks_of_one_class(self) -> None:
        timeline = Timeline(2)
        for worker, chunk in ((1, "1/2"), (2, "2/2")):
            timeline.add(
                Bar("unit", worker, LONG, 0.0, 1.0, strategy="free", chunk=chunk)
            )
        data = summarise(timeline)
        self.assertEqual({u["label"] for u in data["units"]}, {LONG})
        self.assertEqual([u["chunk"] for u in data["units"]], ["1/2", "2/2"])
        self.assertEqual(short_name(data["units"][1]), "Long 2/2")
        self.assertEqual(
            {s["label"] for s in data["summary"]["slowest"]},
            {f"{LONG} [chunk 1/2]", f"{LONG} [chunk 2/2]"},
        )
