"""Read ``mp_group`` off test classes and turn a flat test list into units.

A unit is what one worker runs in one go: a single class, or a whole serial
group. Everything here is pure: it takes test ids and classes, never
processes or databases, so it is tested in-process.
"""

from __future__ import annotations

import enum
import unittest
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigurationError


class Strategy(enum.Enum):
    FREE = "free"
    SERIAL = "serial"
    ISOLATED_FREE = "isolated_free"
    ISOLATED_SERIAL = "isolated_serial"

    @property
    def isolated(self) -> bool:
        return self in (Strategy.ISOLATED_FREE, Strategy.ISOLATED_SERIAL)

    @property
    def whole_group(self) -> bool:
        """True when the group is one unit, run in one process."""
        return self in (Strategy.SERIAL, Strategy.ISOLATED_SERIAL)


CHOICES = ", ".join(repr(s.value) for s in Strategy)


@dataclass(frozen=True)
class Membership:
    """What one class's ``mp_group`` says."""

    group: str | None
    strategy: Strategy | None  # None: not named, the group decides


@dataclass
class Unit:
    """Tests one worker runs together, as indices into the flat test list."""

    key: str  # "module.Class" or "group:name"; stable across runs
    group: str | None
    strategy: Strategy
    classes: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    #: A chunk of a split class: (its number from 1, how many chunks).
    chunk: tuple[int, int] | None = None

    @property
    def chunk_label(self) -> str:
        """``" [chunk 2/4]"`` for a chunk of a split class, else nothing."""
        return f" [chunk {self.chunk[0]}/{self.chunk[1]}]" if self.chunk else ""

    @property
    def short_label(self) -> str:
        """The group's name, or the class's own name."""
        if self.group:
            return self.group + self.chunk_label
        return self.classes[0].rsplit(".", 1)[-1] + self.chunk_label

    @property
    def label(self) -> str:
        if self.strategy.whole_group:
            return f"{self.group} ({self.strategy.value}: {', '.join(self.classes)})"
        return self.classes[0] + self.chunk_label


def class_label(test: unittest.TestCase) -> str:
    cls = type(test)
    return f"{cls.__module__}.{cls.__qualname__}"


def read_membership(cls: type) -> Membership:
    """Parse ``cls.mp_group``; raise ConfigurationError naming what is wrong."""
    value = getattr(cls, "mp_group", None)
    if value is None:
        return Membership(None, None)
    where = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(value, str):
        group, strategy_name = value, None
    elif (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, str) for v in value)
    ):
        group, strategy_name = value
    else:
        raise ConfigurationError(
            f"{where}.mp_group is {value!r}; it must be a group name or a "
            f"(group, strategy) pair of strings, with strategy one of {CHOICES}."
        )
    if not group.strip():
        raise ConfigurationError(
            f"{where}.mp_group is {value!r}; the group name must not be empty. "
            f"Use a group name, or a (group, strategy) pair with strategy one "
            f"of {CHOICES}."
        )
    if strategy_name is None:
        return Membership(group, None)
    try:
        strategy = Strategy(strategy_name)
    except ValueError:
        raise ConfigurationError(
            f"{where}.mp_group is {value!r}: unknown strategy "
            f"{strategy_name!r} for group {group!r}; choose one of {CHOICES}."
        ) from None
    return Membership(group, strategy)


def read_split(cls: type) -> bool:
    """``cls.mp_split``: False when the class must run whole (one worker,
    one ``setUpClass``); inherited like ``mp_group``. True by default."""
    value = getattr(cls, "mp_split", True)
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{cls.__module__}.{cls.__qualname__}.mp_split is {value!r}; it "
            f"must be True or False."
        )
    return value


def resolve_strategies(
    memberships: dict[str, tuple[type, Membership]],
) -> dict[str, Strategy]:
    """Map each group to its strategy; two classes naming different ones fail."""
    named: dict[str, tuple[str, Strategy]] = {}
    for where, (_cls, m) in memberships.items():
        if m.group is None or m.strategy is None:
            continue
        if m.group in named and named[m.group][1] is not m.strategy:
            first_where, first = named[m.group]
            raise ConfigurationError(
                f"Group {m.group!r} is given two strategies: {first.value!r} by "
                f"{first_where} and {m.strategy.value!r} by {where}. A group "
                f"has one strategy (one of {CHOICES}); name it on one class, "
                f"or the same on all."
            )
        named.setdefault(m.group, (where, m.strategy))
    return {group: strategy for group, (_where, strategy) in named.items()}


def build_units(tests: Sequence[unittest.TestCase]) -> list[Unit]:
    """Split ``tests`` (in run order) into units, keeping discovery order.

    Tests of one class stay together in the order given; a serial group's
    classes run in the order they were first met.
    """
    memberships: dict[str, tuple[type, Membership]] = {}
    for test in tests:
        label = class_label(test)
        if label not in memberships:
            memberships[label] = (type(test), read_membership(type(test)))
            read_split(type(test))  # a bad mp_split fails before any test runs
    group_strategy = resolve_strategies(memberships)

    units: dict[str, Unit] = {}
    for index, test in enumerate(tests):
        label = class_label(test)
        group = memberships[label][1].group
        strategy = group_strategy.get(group, Strategy.FREE) if group else Strategy.FREE
        key = f"group:{group}" if strategy.whole_group else label
        unit = units.get(key)
        if unit is None:
            unit = units[key] = Unit(key=key, group=group, strategy=strategy)
        if label not in unit.classes:
            unit.classes.append(label)
        unit.indices.append(index)
    for unit in units.values():
        if unit.strategy.whole_group:
            # Tests of one class may have been interleaved by --shuffle; run
            # the group class by class, in order of first appearance.
            order = {label: i for i, label in enumerate(unit.classes)}
            unit.indices.sort(key=lambda i: order[class_label(tests[i])])
    return list(units.values())
