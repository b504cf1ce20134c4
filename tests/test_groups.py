"""concurrent_runner.planning.groups: reading ``mp_group`` and splitting
tests into units.

Test classes are built inside helpers with ``type()``, never at module level,
so that discovery does not collect and run them.
"""

from __future__ import annotations

import unittest
from typing import Any

from concurrent_runner import ConfigurationError
from concurrent_runner.planning.groups import (
    Membership,
    Strategy,
    Unit,
    build_units,
    class_label,
    read_membership,
)

MODULE = "fake.app"
CHOICES = ("'free'", "'serial'", "'isolated_free'", "'isolated_serial'")
_MISSING = object()


def make_class(
    name: str,
    mp_group: Any = _MISSING,
    *,
    tests: tuple[str, ...] = ("test_a", "test_b"),
    base: type = unittest.TestCase,
    module: str = MODULE,
) -> type:
    attrs: dict[str, Any] = {"__module__": module, "__qualname__": name}
    if mp_group is not _MISSING:
        attrs["mp_group"] = mp_group
    for test in tests:
        attrs[test] = lambda self: None
    return type(name, (base,), attrs)


def instances(cls: type, *names: str) -> list[unittest.TestCase]:
    """Test instances of ``cls``: the given methods, or all ``test_*`` ones."""
    if not names:
        names = tuple(sorted(n for n in dir(cls) if n.startswith("test_")))
    return [cls(name) for name in names]


def labels(tests: list[unittest.TestCase], unit: Unit) -> list[str]:
    return [tests[i].id() for i in unit.indices]


class ReadMembershipTests(unittest.TestCase):
    def test_no_attribute(self) -> None:
        self.assertEqual(read_membership(make_class("A")), Membership(None, None))

    def test_none_means_no_group(self) -> None:
        self.assertEqual(read_membership(make_class("A", None)), Membership(None, None))

    def test_name_only(self) -> None:
        self.assertEqual(read_membership(make_class("A", "db")), Membership("db", None))

    def test_tuple_with_every_strategy(self) -> None:
        for strategy in Strategy:
            with self.subTest(strategy=strategy.value):
                cls = make_class("A", ("db", strategy.value))
                self.assertEqual(read_membership(cls), Membership("db", strategy))

    def test_list_with_strategy(self) -> None:
        cls = make_class("A", ["db", "isolated_serial"])
        self.assertEqual(
            read_membership(cls), Membership("db", Strategy.ISOLATED_SERIAL)
        )

    def test_subclass_inherits(self) -> None:
        base = make_class("Base", ("db", "serial"))
        child = make_class("Child", base=base)
        grandchild = make_class("GrandChild", base=child)
        for cls in (child, grandchild):
            with self.subTest(cls=cls.__name__):
                self.assertEqual(
                    read_membership(cls), Membership("db", Strategy.SERIAL)
                )

    def test_subclass_may_override_or_leave(self) -> None:
        base = make_class("Base", ("db", "serial"))
        self.assertEqual(
            read_membership(make_class("Other", "other", base=base)),
            Membership("other", None),
        )
        self.assertEqual(
            read_membership(make_class("Out", None, base=base)), Membership(None, None)
        )


class InvalidMembershipTests(unittest.TestCase):
    def assert_rejected(self, value: Any, *fragments: str) -> str:
        cls = make_class("Bad", value, module="fake.badmod")
        with self.assertRaises(ConfigurationError) as cm:
            read_membership(cls)
        message = str(cm.exception)
        self.assertIn("fake.badmod.Bad", message)
        self.assertIn(repr(value), message)
        for choice in CHOICES:
            self.assertIn(choice, message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_unknown_strategy(self) -> None:
        message = self.assert_rejected(("payments", "paralel"), "'paralel'")
        self.assertIn("'payments'", message)

    def test_strategy_case_matters(self) -> None:
        self.assert_rejected(("payments", "Serial"), "'Serial'")

    def test_int(self) -> None:
        self.assert_rejected(3)

    def test_three_tuple(self) -> None:
        self.assert_rejected(("g", "free", "extra"))

    def test_one_tuple(self) -> None:
        self.assert_rejected(("g",))

    def test_non_string_group(self) -> None:
        self.assert_rejected((1, "free"))

    def test_non_string_strategy(self) -> None:
        self.assert_rejected(("g", None))

    def test_bytes_and_dict(self) -> None:
        self.assert_rejected(b"g")
        self.assert_rejected({"g": "free"})

    def test_empty_name(self) -> None:
        self.assert_rejected("")
        self.assert_rejected("   ")
        self.assert_rejected(("", "serial"))

    def test_build_units_rejects_before_grouping(self) -> None:
        good = make_class("Good", ("g", "serial"))
        bad = make_class("Bad", ("g", "sequential"))
        with self.assertRaises(ConfigurationError) as cm:
            build_units(instances(good) + instances(bad))
        self.assertIn("fake.app.Bad", str(cm.exception))
        self.assertIn("'sequential'", str(cm.exception))


class ConflictTests(unittest.TestCase):
    def test_conflicting_strategies(self) -> None:
        first = make_class("First", ("pay", "serial"))
        second = make_class("Second", ("pay", "isolated_free"))
        neutral = make_class("Neutral", "pay")
        with self.assertRaises(ConfigurationError) as cm:
            build_units(instances(first) + instances(neutral) + instances(second))
        message = str(cm.exception)
        for fragment in (
            "fake.app.First",
            "fake.app.Second",
            "'serial'",
            "'isolated_free'",
            "'pay'",
            *CHOICES,
        ):
            self.assertIn(fragment, message)

    def test_same_strategy_twice_is_fine(self) -> None:
        first = make_class("First", ("pay", "serial"))
        second = make_class("Second", ["pay", "serial"])
        units = build_units(instances(first) + instances(second))
        self.assertEqual(len(units), 1)
        self.assertIs(units[0].strategy, Strategy.SERIAL)

    def test_same_name_in_other_group_does_not_conflict(self) -> None:
        a = make_class("A", ("one", "serial"))
        b = make_class("B", ("two", "isolated_free"))
        units = build_units(instances(a) + instances(b))
        self.assertEqual(
            [(u.group, u.strategy) for u in units],
            [("one", Strategy.SERIAL), ("two", Strategy.ISOLATED_FREE)],
        )


class BuildUnitsTests(unittest.TestCase):
    def test_ungrouped_class_is_its_own_free_unit(self) -> None:
        a, b = make_class("A"), make_class("B")
        tests = instances(a) + instances(b)
        units = build_units(tests)
        self.assertEqual(
            units,
            [
                Unit("fake.app.A", None, Strategy.FREE, ["fake.app.A"], [0, 1]),
                Unit("fake.app.B", None, Strategy.FREE, ["fake.app.B"], [2, 3]),
            ],
        )
        self.assertEqual(units[0].label, "fake.app.A")

    def test_group_without_strategy_is_free(self) -> None:
        a, b = make_class("A", "g"), make_class("B", "g")
        units = build_units(instances(a) + instances(b))
        self.assertEqual([u.key for u in units], ["fake.app.A", "fake.app.B"])
        for unit in units:
            self.assertEqual(unit.group, "g")
            self.assertIs(unit.strategy, Strategy.FREE)

    def test_one_class_sets_the_strategy_for_the_group(self) -> None:
        # The class naming the strategy comes last; the others follow it.
        a, b = make_class("A", "g"), make_class("B", "g")
        c = make_class("C", ("g", "serial"))
        tests = instances(a) + instances(b) + instances(c)
        units = build_units(tests)
        self.assertEqual(len(units), 1)
        unit = units[0]
        self.assertEqual(unit.key, "group:g")
        self.assertIs(unit.strategy, Strategy.SERIAL)
        self.assertEqual(unit.classes, ["fake.app.A", "fake.app.B", "fake.app.C"])
        self.assertEqual(unit.indices, list(range(6)))
        self.assertEqual(unit.label, "g (serial: fake.app.A, fake.app.B, fake.app.C)")

    def test_whole_group_strategies_make_one_unit_class_by_class(self) -> None:
        for strategy in ("serial", "isolated_serial"):
            with self.subTest(strategy=strategy):
                b = make_class("B", ("g", strategy), tests=("test_1", "test_2"))
                a = make_class("A", "g", tests=("test_1", "test_2"))
                free = make_class("Free", tests=("test_1",))
                # Interleaved, as --shuffle may leave them; B is met first.
                tests = [
                    b("test_2"),
                    a("test_1"),
                    free("test_1"),
                    b("test_1"),
                    a("test_2"),
                ]
                units = build_units(tests)
                self.assertEqual([u.key for u in units], ["group:g", "fake.app.Free"])
                group = units[0]
                self.assertIs(group.strategy, Strategy(strategy))
                self.assertEqual(group.classes, ["fake.app.B", "fake.app.A"])
                # Class by class in first-seen order; within a class, the
                # order given (B.test_2 before B.test_1).
                self.assertEqual(group.indices, [0, 3, 1, 4])
                self.assertEqual(
                    labels(tests, group),
                    [
                        "fake.app.B.test_2",
                        "fake.app.B.test_1",
                        "fake.app.A.test_1",
                        "fake.app.A.test_2",
                    ],
                )
                self.assertEqual(units[1].indices, [2])

    def test_free_strategies_make_one_unit_per_class(self) -> None:
        for strategy in ("free", "isolated_free"):
            with self.subTest(strategy=strategy):
                a = make_class("A", ("g", strategy))
                b = make_class("B", "g")
                tests = [a("test_a"), b("test_a"), a("test_b"), b("test_b")]
                units = build_units(tests)
                self.assertEqual(
                    [(u.key, u.group, u.strategy) for u in units],
                    [
                        ("fake.app.A", "g", Strategy(strategy)),
                        ("fake.app.B", "g", Strategy(strategy)),
                    ],
                )
                self.assertEqual([u.indices for u in units], [[0, 2], [1, 3]])
                self.assertEqual(
                    [u.classes for u in units], [["fake.app.A"], ["fake.app.B"]]
                )

    def test_indices_cover_the_input_exactly_once(self) -> None:
        classes = [
            make_class("S1", ("s", "serial"), tests=("test_x", "test_y")),
            make_class("Plain", tests=("test_x",)),
            make_class("I1", ("i", "isolated_free"), tests=("test_x", "test_y")),
            make_class("S2", "s", tests=("test_x",)),
            make_class("Z1", ("z", "isolated_serial"), tests=("test_x",)),
            make_class("I2", "i", tests=("test_x",)),
        ]
        tests = [t for cls in classes for t in instances(cls)]
        tests = tests[::2] + tests[1::2]  # interleave classes
        units = build_units(tests)
        every = sorted(i for u in units for i in u.indices)
        self.assertEqual(every, list(range(len(tests))))
        for unit in units:
            for i in unit.indices:
                self.assertIn(class_label(tests[i]), unit.classes)
        by_key = {u.key: u for u in units}
        self.assertEqual(
            set(by_key),
            {"group:s", "fake.app.Plain", "fake.app.I1", "fake.app.I2", "group:z"},
        )
        self.assertEqual(by_key["group:s"].classes, ["fake.app.S1", "fake.app.S2"])

    def test_subclass_joins_parent_group(self) -> None:
        base = make_class("Base", ("g", "serial"), tests=("test_a",))
        child = make_class("Child", base=base, tests=("test_c",))
        tests = instances(base) + instances(child)
        units = build_units(tests)
        self.assertEqual(len(units), 1)
        self.assertEqual(units[0].classes, ["fake.app.Base", "fake.app.Child"])
        self.assertEqual(len(units[0].indices), len(tests))

    def test_units_follow_discovery_order(self) -> None:
        c, a, b = make_class("C"), make_class("A", ("g", "serial")), make_class("B")
        units = build_units(instances(c) + instances(a) + instances(b))
        self.assertEqual(
            [u.key for u in units], ["fake.app.C", "group:g", "fake.app.B"]
        )

    def test_keys_are_stable(self) -> None:
        def build(order: list[int]) -> list[str]:
            classes = [
                make_class("A", ("g", "serial")),
                make_class("B", "g"),
                make_class("C", ("h", "isolated_free")),
                make_class("D"),
            ]
            tests = [t for i in order for t in instances(classes[i])]
            return sorted(u.key for u in build_units(tests))

        first = build([0, 1, 2, 3])
        self.assertEqual(first, ["fake.app.C", "fake.app.D", "group:g"])
        # Fresh classes, another order: the same keys.
        self.assertEqual(build([3, 2, 1, 0]), first)

    def test_empty(self) -> None:
        self.assertEqual(build_units([]), [])

    def test_class_label(self) -> None:
        cls = make_class("Named", module="pkg.mod")
        self.assertEqual(class_label(cls("test_a")), "pkg.mod.Named")
