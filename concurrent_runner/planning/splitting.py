"""Split a long class into chunks of its tests where that shortens the plan.

With the class as the smallest unit, no plan is shorter than its longest
class. A ``free`` (or ``isolated_free``) class may instead run as several
chunks on several workers: each chunk is a unit of its own, a run of
consecutive tests of the class in their order, with its own
``setUpClass`` / ``setUpTestData`` / ``tearDownClass``, exactly as when a
user runs a subset of the class by label. What a chunk repeats is the
class's fixture time: its recorded time minus its tests' recorded times.

The decision is made from the durations file alone, and only where it pays:
a class is split into the number of chunks that makes the plan (the same
``make_plan`` that runs it) shortest, and only when that is shorter than
the plan without the split by a margin. A class without recorded durations
(its own and its tests') is never split, nor a class in a ``serial`` or
``isolated_serial`` group, nor one with ``mp_split = False``.

Pure: units and numbers in, units and numbers out.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .groups import Strategy, Unit
from .plan import Plan, make_plan

#: Seconds a chunk costs beyond its fixtures and tests: handing it to a
#: worker, its results coming back, its module's fixtures once more.
CHUNK_OVERHEAD = 0.02
#: A split must shorten the plan's estimate by this fraction at least: a
#: smaller gain is within what estimates get wrong.
MIN_GAIN = 0.03


@dataclass
class Splits:
    """The units after splitting, their estimates, and what was split."""

    units: list[Unit]
    estimates: list[float]
    #: class label -> number of chunks, for the classes that were split.
    chunks: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """``"; long class(es) split into chunks: Admin into 4"``, or nothing."""
        if not self.chunks:
            return ""
        names = ", ".join(
            f"{label.rsplit('.', 1)[-1]} into {count}"
            for label, count in self.chunks.items()
        )
        return f"; long class(es) split into chunks: {names}"


@dataclass(frozen=True)
class _Cost:
    fixture: float  # what every chunk of the class repeats
    tests: list[float]  # each test of the unit, in the unit's order


def tests_by_class(tests: Mapping[str, float]) -> dict[str, float]:
    """The recorded tests' total time, per class label."""
    totals: dict[str, float] = {}
    for test_id, seconds in tests.items():
        label = test_id.rsplit(".", 1)[0]
        totals[label] = totals.get(label, 0.0) + seconds
    return totals


def fixture_time(
    label: str, classes: Mapping[str, float], test_totals: Mapping[str, float]
) -> float | None:
    """The class's recorded time minus its tests' recorded times (never
    below zero), or None when either is missing."""
    if label not in classes or label not in test_totals:
        return None
    return max(0.0, classes[label] - test_totals[label])


def _splittable(unit: Unit, refused: Collection[str]) -> bool:
    return (
        unit.strategy in (Strategy.FREE, Strategy.ISOLATED_FREE)
        and unit.chunk is None
        and len(unit.classes) == 1
        and unit.classes[0] not in refused
        and len(unit.indices) >= 2
    )


def _cost(
    unit: Unit,
    test_ids: Sequence[str],
    classes: Mapping[str, float],
    tests: Mapping[str, float],
    fixtures: Mapping[str, float | None],
) -> _Cost | None:
    fixture = fixtures.get(unit.classes[0])
    if fixture is None:
        return None
    known = [tests.get(test_ids[i]) for i in unit.indices]
    recorded = [s for s in known if s is not None]
    if not recorded:
        return None
    mean = sum(recorded) / len(recorded)  # for tests added since
    return _Cost(fixture, [mean if s is None else s for s in known])


def chunk_bounds(times: Sequence[float], count: int) -> list[tuple[int, int]]:
    """``count`` runs of consecutive tests (``[start, end)``), none empty,
    each ending where the running total is nearest to its share."""
    total = sum(times)
    cumulative = [0.0]
    for seconds in times:
        cumulative.append(cumulative[-1] + seconds)
    cuts = [0]
    for j in range(1, count):
        target = total * j / count
        low = cuts[-1] + 1  # at least one test in the chunk before
        high = len(times) - (count - j)  # at least one left for each after
        best = min(range(low, high + 1), key=lambda c: (abs(cumulative[c] - target), c))
        cuts.append(best)
    cuts.append(len(times))
    return list(itertools.pairwise(cuts))


def _chunks(unit: Unit, cost: _Cost, count: int) -> tuple[list[Unit], list[float]]:
    units, estimates = [], []
    for number, (start, end) in enumerate(chunk_bounds(cost.tests, count), 1):
        units.append(
            replace(
                unit,
                key=f"{unit.key}[{number}/{count}]",
                classes=list(unit.classes),
                indices=unit.indices[start:end],
                chunk=(number, count),
            )
        )
        estimates.append(cost.fixture + sum(cost.tests[start:end]) + CHUNK_OVERHEAD)
    return units, estimates


def _floor(units: Sequence[Unit], estimates: Sequence[float], workers: int) -> float:
    """A lower bound of any plan of these units, split or not: each phase's
    work over the workers it may use (one for an ``isolated_serial``
    group, whose phases follow one another)."""
    shared = isolated_free = serial = 0.0
    for unit, estimate in zip(units, estimates, strict=True):
        if unit.strategy is Strategy.ISOLATED_SERIAL:
            serial += estimate
        elif unit.strategy is Strategy.ISOLATED_FREE:
            isolated_free += estimate
        else:
            shared += estimate
    return (shared + isolated_free) / workers + serial


def _excess(plan: Plan, estimates: Sequence[float], workers: int) -> float:
    """The smallest time by which a phase of ``plan`` that may use several
    workers (all but an ``isolated_serial`` group's) takes longer than its
    work spread over them."""
    excesses = [
        phase.estimate - sum(estimates[u] for u in phase.units) / workers
        for phase in plan.phases
        if not phase.name.startswith(Strategy.ISOLATED_SERIAL.value)
    ]
    return min((e for e in excesses if e > 0), default=0.0)


def split_long_classes(
    units: Sequence[Unit],
    estimates: Sequence[float],
    test_ids: Sequence[str],
    *,
    classes: Mapping[str, float],
    tests: Mapping[str, float],
    workers: int,
    refused: Collection[str] = (),
) -> Splits:
    """Split the classes whose chunks make the plan for ``workers`` shorter.

    ``classes`` and ``tests`` are the recorded durations (the durations
    file); ``refused`` the labels of the classes that say ``mp_split =
    False``. Greedy: the longest class that may be split is tried first,
    with every number of chunks up to ``workers``; the best split that
    shortens the plan by ``MIN_GAIN`` is kept, and the search goes on with
    the next, until a round finds none.
    """
    result = Splits(list(units), list(estimates))
    if workers < 2 or not classes or not tests:
        return result
    chosen: dict[int, tuple[list[Unit], list[float]]] = {}

    def assemble(
        extra: dict[int, tuple[list[Unit], list[float]]],
    ) -> tuple[list[Unit], list[float]]:
        out_units: list[Unit] = []
        out_estimates: list[float] = []
        for i, unit in enumerate(units):
            pieces = extra.get(i) or chosen.get(i)
            if pieces is None:
                out_units.append(unit)
                out_estimates.append(estimates[i])
            else:
                out_units += pieces[0]
                out_estimates += pieces[1]
        return out_units, out_estimates

    plan = make_plan(units, estimates, workers)
    best = plan.estimate
    # No plan is shorter than its work spread over the workers, and a split
    # only adds work (the fixtures again): once the plan is within MIN_GAIN
    # of that, nothing is worth trying.
    floor = _floor(units, estimates, workers)
    if floor >= best * (1 - MIN_GAIN):
        return result
    test_totals = tests_by_class(tests)
    splittable = [i for i, unit in enumerate(units) if _splittable(unit, refused)]
    costs: dict[int, _Cost | None] = {}

    def cost_of(i: int) -> _Cost | None:
        if i not in costs:
            label = units[i].classes[0]
            fixtures = {label: fixture_time(label, classes, test_totals)}
            costs[i] = _cost(units[i], test_ids, classes, tests, fixtures)
        return costs[i]

    tried: set[int] = set()
    while floor < best * (1 - MIN_GAIN):
        # The longest first. What a phase takes beyond its work over its
        # workers is at most the last unit its busiest worker was given
        # (that worker was the least busy then), so a class shorter than
        # the smallest such excess is not what holds the plan up.
        shortest = _excess(plan, assemble({})[1], workers)
        candidates = sorted(
            (i for i in splittable if i not in tried and estimates[i] >= shortest),
            key=lambda i: (-estimates[i], i),
        )[:workers]
        accepted = False
        for i in candidates:
            tried.add(i)
            cost = cost_of(i)
            if cost is None:
                continue  # no recorded durations of it, or of its tests
            options: list[tuple[float, int, tuple[list[Unit], list[float]]]] = []
            for count in range(2, min(workers, len(units[i].indices)) + 1):
                pieces = _chunks(units[i], cost, count)
                trial = make_plan(*assemble({i: pieces}), workers)
                options.append((trial.estimate, count, pieces))
                # More chunks add fixtures and take workers from the rest:
                # past two counts that were no better, stop looking.
                if count >= 4 and min(o[0] for o in options[-2:]) > min(
                    o[0] for o in options[:-2]
                ):
                    break
            if not options:
                continue
            estimate, count, pieces = min(options, key=lambda o: (o[0], o[1]))
            if estimate < best * (1 - MIN_GAIN):
                chosen[i] = pieces
                result.chunks[units[i].classes[0]] = count
                plan = make_plan(*assemble({}), workers)
                best = plan.estimate
                floor = _floor(*assemble({}), workers)
                accepted = True
                break
        if not accepted:
            break
    result.units, result.estimates = assemble({})
    return result
