"""concurrent_runner.planning.sharding: deterministic, whole groups, balanced."""

from __future__ import annotations

import argparse
import os
import random
import unittest
from pathlib import Path
from unittest import mock

from django.test import SimpleTestCase

from concurrent_runner.errors import ConfigurationError
from concurrent_runner.planning import durations
from concurrent_runner.planning.groups import Strategy, Unit
from concurrent_runner.planning.sharding import (
    AUTO,
    Shard,
    fingerprint,
    group_key,
    parse_shard,
    resolve_shard,
    select,
    shard_argument,
    shard_units,
)


def make_units(rng: random.Random, count: int) -> tuple[list[Unit], list[float]]:
    units, estimates = [], []
    for i in range(count):
        group = rng.choice([None, None, "g1", "g2", "g3"])
        strategy = rng.choice(list(Strategy)) if group else Strategy.FREE
        units.append(
            Unit(key=f"mod.C{i}", group=group, strategy=strategy, classes=[f"mod.C{i}"])
        )
        estimates.append(rng.choice([0.1, 1.0, 2.5, 7.0]))
    return units, estimates


class ShardTests(unittest.TestCase):
    def test_union_is_the_whole_suite_exactly_once_with_groups_whole(self) -> None:
        rng = random.Random(7)
        for case in range(100):
            units, estimates = make_units(rng, rng.randint(1, 40))
            total = rng.randint(1, 6)
            shards = [
                shard_units(units, estimates, k, total) for k in range(1, total + 1)
            ]
            with self.subTest(case=case):
                every = sorted(i for shard in shards for i in shard)
                self.assertEqual(every, list(range(len(units))))
                owner = {}
                for k, shard in enumerate(shards):
                    for i in shard:
                        self.assertEqual(owner.setdefault(group_key(units[i]), k), k)

    def test_balanced_by_estimate(self) -> None:
        rng = random.Random(11)
        for case in range(100):
            units, estimates = make_units(rng, rng.randint(5, 40))
            total = rng.randint(2, 4)
            loads = [
                sum(estimates[i] for i in shard_units(units, estimates, k, total))
                for k in range(1, total + 1)
            ]
            weights: dict[str, float] = {}
            for unit, estimate in zip(units, estimates, strict=True):
                weights[group_key(unit)] = weights.get(group_key(unit), 0) + estimate
            with self.subTest(case=case):
                # Greedy to the lightest shard: no shard exceeds another by
                # more than the heaviest group.
                self.assertLessEqual(
                    max(loads) - min(loads), max(weights.values()) + 1e-9
                )

    def test_deterministic(self) -> None:
        units, estimates = make_units(random.Random(3), 30)
        self.assertEqual(
            [shard_units(units, estimates, k, 3) for k in (1, 2, 3)],
            [shard_units(list(units), list(estimates), k, 3) for k in (1, 2, 3)],
        )

    def test_one_shard_is_everything(self) -> None:
        units, estimates = make_units(random.Random(5), 12)
        self.assertEqual(shard_units(units, estimates, 1, 1), list(range(12)))


class ParseTests(unittest.TestCase):
    def test_parse(self) -> None:
        self.assertEqual(parse_shard("2/4"), (2, 4))
        for bad in ("0/4", "5/4", "x/4", "2", "2/4/1", ""):
            with self.subTest(bad=bad), self.assertRaises(argparse.ArgumentTypeError):
                parse_shard(bad)

    def test_the_argument_takes_k_of_n_or_auto(self) -> None:
        self.assertEqual(shard_argument("2/4"), (2, 4))
        self.assertEqual(shard_argument("auto"), AUTO)
        with self.assertRaisesRegex(argparse.ArgumentTypeError, "'Auto' is not K/N"):
            shard_argument("Auto")


CI = {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "5"}


class ResolveTests(unittest.TestCase):
    def test_the_ci_variables_alone_shard_nothing(self) -> None:
        self.assertIsNone(resolve_shard(None, CI))

    def test_auto_reads_the_ci_variables_and_says_so(self) -> None:
        shard = resolve_shard("auto", CI)
        self.assertEqual((shard.index, shard.total), (3, 5))
        self.assertEqual(shard.source, "CI_NODE_INDEX=3, CI_NODE_TOTAL=5")

    def test_auto_without_the_variables_says_which_is_missing(self) -> None:
        for environ, missing in (
            ({}, "CI_NODE_INDEX and CI_NODE_TOTAL are not set"),
            ({"CI_NODE_INDEX": "1"}, "CI_NODE_TOTAL is not set"),
            ({"CI_NODE_INDEX": "", "CI_NODE_TOTAL": "2"}, "CI_NODE_INDEX is not"),
        ):
            with self.subTest(environ=environ):
                with self.assertRaisesRegex(ConfigurationError, missing) as caught:
                    resolve_shard("auto", environ)
                self.assertIn("or pass --shard K/N", str(caught.exception))

    def test_bad_ci_values_are_named_with_the_fix(self) -> None:
        for index, total in (("0", "2"), ("3", "2"), ("x", "2"), ("1", "2.0")):
            environ = {"CI_NODE_INDEX": index, "CI_NODE_TOTAL": total}
            with self.subTest(environ=environ):
                with self.assertRaises(ConfigurationError) as caught:
                    resolve_shard("auto", environ)
                message = str(caught.exception)
                self.assertIn(f"CI_NODE_INDEX={index!r}", message)
                self.assertIn(f"CI_NODE_TOTAL={total!r}", message)
                self.assertIn("1 <= CI_NODE_INDEX <= CI_NODE_TOTAL", message)
                self.assertIn("Fix them, or pass --shard K/N.", message)

    def test_values_from_a_script(self) -> None:
        self.assertEqual(resolve_shard((2, 4)), Shard(2, 4))
        self.assertEqual(resolve_shard("2/4"), Shard(2, 4))
        self.assertEqual(resolve_shard(Shard(1, 2, "x")), Shard(1, 2, "x"))
        for bad in ((0, 2), (3, 2), (1,), "0/2", "half", 3):
            with self.subTest(bad=bad), self.assertRaises(ConfigurationError):
                resolve_shard(bad)  # type: ignore[arg-type]


class RunnerShardTests(SimpleTestCase):
    """In the runner: the environment shards nothing unless asked."""

    def suite_size(self, environ: dict[str, str], **options: object) -> int:
        from concurrent_runner.runner import Runner

        with mock.patch.dict(os.environ, environ):
            runner = Runner(verbosity=0, **options)  # type: ignore[arg-type]
            return runner.build_suite(["tests.test_sharding"]).countTestCases()

    def test_ci_variables_without_the_flag_run_everything(self) -> None:
        whole = self.suite_size({})
        self.assertEqual(
            self.suite_size({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}), whole
        )
        # Not even a bad value matters when sharding was not asked for.
        self.assertEqual(
            self.suite_size({"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "2"}), whole
        )

    def test_shard_auto_takes_the_variables(self) -> None:
        whole = self.suite_size({})
        parts = [
            self.suite_size(
                {"CI_NODE_INDEX": str(k), "CI_NODE_TOTAL": "3"}, shard="auto"
            )
            for k in (1, 2, 3)
        ]
        self.assertEqual(sum(parts), whole)
        self.assertEqual(parts, [self.suite_size({}, shard=(k, 3)) for k in (1, 2, 3)])

    def test_a_bad_variable_is_an_error_before_any_test(self) -> None:
        from concurrent_runner.runner import Runner

        with (
            mock.patch.dict(os.environ, {"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "2"}),
            self.assertRaisesRegex(ConfigurationError, "CI_NODE_INDEX='0'"),
        ):
            Runner(shard="auto")


class FingerprintTests(unittest.TestCase):
    def setUp(self) -> None:
        self.units, self.estimates = make_units(random.Random(9), 12)
        for i, unit in enumerate(self.units):
            unit.indices.extend([2 * i, 2 * i + 1])
        self.ids = [f"mod.C{i // 2}.test_{i}" for i in range(24)]

    def print_of(self, units=None, estimates=None, total=3, ids=None) -> str:
        return fingerprint(
            units or self.units, estimates or self.estimates, total, ids or self.ids
        )

    def test_same_input_same_fingerprint_and_every_shard_shows_it(self) -> None:
        shown = {
            select(Shard(k, 3), self.units, self.estimates, self.ids).fingerprint
            for k in (1, 2, 3)
        }
        self.assertEqual(shown, {self.print_of()})
        self.assertRegex(shown.pop(), r"^[0-9a-f]{12}$")

    def test_anything_the_split_depends_on_changes_it(self) -> None:
        base = self.print_of()
        estimates = list(self.estimates)
        estimates[4] += 0.001
        renamed = list(self.ids)
        renamed[7] = "mod.C3.test_renamed"
        self.assertNotEqual(self.print_of(estimates=estimates), base)
        self.assertNotEqual(self.print_of(total=4), base)
        self.assertNotEqual(self.print_of(ids=renamed), base)
        self.assertNotEqual(self.print_of(units=self.units[::-1]), base)

    def test_the_summary_names_the_split_and_its_source(self) -> None:
        picked = select(
            Shard(2, 3, "CI_NODE_INDEX=2, CI_NODE_TOTAL=3"),
            self.units,
            self.estimates,
            self.ids,
        )
        text = picked.summary(5, "/p/durations.json")
        self.assertIn(
            "Shard 2/3 (--shard auto: CI_NODE_INDEX=2, CI_NODE_TOTAL=3):", text
        )
        self.assertIn(f"{len(picked.tests)} of 24 test(s)", text)
        self.assertIn(f"Shard split {picked.fingerprint}: from 12 unit(s)", text)
        self.assertIn("5 recorded duration(s) from /p/durations.json", text)
        self.assertIn(
            "test counts (no recorded durations)",
            select(Shard(1, 3), self.units, self.estimates, self.ids).summary(0, "x"),
        )
        self.assertEqual(
            picked.tests,
            sorted(i for u in picked.units for i in self.units[u].indices),
        )


class RecordingPathTests(unittest.TestCase):
    def test_a_sharded_run_records_beside_the_file_it_plans_from(self) -> None:
        path = Path("/ci/.concurrent_runner_durations.json")
        self.assertEqual(durations.recording_path(path, None), path)
        self.assertEqual(
            durations.recording_path(path, Shard(2, 4)),
            Path("/ci/.concurrent_runner_durations.shard-2-of-4.json"),
        )
        self.assertEqual(
            durations.recording_path(Path("/ci/times"), Shard(1, 2)),
            Path("/ci/times.shard-1-of-2.json"),
        )

    def test_devnull_stays_off_for_shards(self) -> None:
        devnull = Path(os.devnull)
        self.assertEqual(durations.recording_path(devnull, Shard(1, 2)), devnull)
