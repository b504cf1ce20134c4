"""concurrent_runner.planning.sharding: deterministic, whole groups, balanced."""

from __future__ import annotations

import argparse
import random
import unittest

from concurrent_runner.planning.groups import Strategy, Unit
from concurrent_runner.planning.sharding import (
    group_key,
    parse_shard,
    shard_from_environ,
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

    def test_ci_variables(self) -> None:
        self.assertEqual(
            shard_from_environ({"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "5"}), (3, 5)
        )
        self.assertIsNone(shard_from_environ({"CI_NODE_INDEX": "3"}))
        self.assertIsNone(shard_from_environ({}))
