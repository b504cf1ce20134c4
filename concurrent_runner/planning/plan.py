"""Scheduling: a pure function from units and estimates to a plan.

Isolated groups become phases of their own in which nothing else runs: an
``isolated_free`` group's classes run only beside each other, an
``isolated_serial`` group runs alone on one worker. Everything else shares
one phase.

Within a phase, units are dealt to workers ahead of time, longest first,
each to the worker with the least work so far (LPT), which keeps the
makespan close to ``max(total / workers, longest unit)``. Each worker then
runs its share in the order serial Django would (the suite's order, where
every ``TestCase`` comes before any ``TransactionTestCase``): the load is
balanced by *which* worker gets a unit, never by reordering, so a worker's
sequence is a subsequence of the serial order, as under Django's own
``--parallel``.

``Dispatcher`` walks a plan at run time. A worker that runs out of work
takes a unit from the end of the busiest worker's queue, provided it comes
later in the serial order than what it ran last, so estimates that were
wrong cost little and the order is kept.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .groups import Strategy, Unit


@dataclass(frozen=True)
class Slot:
    """Where the plan puts a unit: which worker (0-based), from when."""

    unit: int
    worker: int
    start: float
    estimate: float


@dataclass
class Phase:
    name: str
    concurrency: int
    units: list[int]  # indices into the unit list, longest first
    slots: list[Slot] = field(default_factory=list)

    @property
    def estimate(self) -> float:
        return max((s.start + s.estimate for s in self.slots), default=0.0)

    def queues(self) -> list[list[int]]:
        """Each worker's units, in the order it runs them."""
        lanes: list[list[int]] = [[] for _ in range(self.concurrency)]
        for slot in sorted(self.slots, key=lambda s: s.start):
            lanes[slot.worker].append(slot.unit)
        return lanes


@dataclass
class Plan:
    workers: int
    phases: list[Phase]

    @property
    def estimate(self) -> float:
        return sum(phase.estimate for phase in self.phases)


def position(unit: Unit) -> int:
    """Where a unit stands in the serial order: its first test's index."""
    return min(unit.indices, default=0)


def _phase_key(unit: Unit) -> tuple[int, str]:
    if unit.strategy is Strategy.ISOLATED_FREE:
        return (1, f"isolated_free group {unit.group!r}")
    if unit.strategy is Strategy.ISOLATED_SERIAL:
        return (2, f"isolated_serial group {unit.group!r}")
    return (0, "shared")


def _assign(
    members: list[int],
    estimates: Sequence[float],
    positions: Sequence[int],
    workers: int,
) -> list[Slot]:
    """LPT: each unit (longest first) to the worker with the least work;
    then each worker's units in serial order, one after the other."""
    # A heap of (load, worker): the least loaded worker, the lowest
    # numbered among equals, in O(log workers).
    loads = [(0.0, w) for w in range(workers)]
    lanes: list[list[int]] = [[] for _ in range(workers)]
    for index in members:
        load, worker = loads[0]
        heapq.heapreplace(loads, (load + estimates[index], worker))
        lanes[worker].append(index)
    slots = []
    for worker, lane in enumerate(lanes):
        start = 0.0
        for index in sorted(lane, key=lambda i: positions[i]):
            slots.append(Slot(index, worker, start, estimates[index]))
            start += estimates[index]
    return slots


def make_plan(units: Sequence[Unit], estimates: Sequence[float], workers: int) -> Plan:
    """Order ``units`` into phases; ``estimates[i]`` is unit i's expected time.

    Deterministic: ties keep the serial order, so the same input (and the
    same ``--shuffle`` seed) always gives the same plan.
    """
    if len(estimates) != len(units):
        raise ValueError("one estimate per unit is needed")
    positions = [position(unit) for unit in units]
    phases: dict[tuple[int, str], list[int]] = {}
    for index in sorted(range(len(units)), key=lambda i: positions[i]):
        phases.setdefault(_phase_key(units[index]), []).append(index)
    width = max(1, workers)
    plan_phases = []
    # Shared work first, then isolated groups in serial order within kind.
    for key in sorted(phases, key=lambda k: (k[0], positions[phases[k][0]])):
        members = sorted(phases[key], key=lambda i: (-estimates[i], positions[i]))
        concurrency = 1 if key[0] == 2 else min(width, len(members))
        phase = Phase(key[1], concurrency, members)
        phase.slots = _assign(members, estimates, positions, concurrency)
        plan_phases.append(phase)
    used = max((phase.concurrency for phase in plan_phases), default=1)
    return Plan(workers=used, phases=plan_phases)


def describe_plan(plan: Plan, units: Sequence[Unit], *, tests: bool) -> list[str]:
    """The plan as lines: phases, then each unit with its worker and estimate."""
    lines = []
    for number, phase in enumerate(plan.phases, 1):
        lines.append(
            f"Phase {number}, {phase.name}, {phase.concurrency} at a time "
            f"(estimate {phase.estimate:.2f}):"
        )
        for slot in sorted(phase.slots, key=lambda s: (s.worker, s.start)):
            unit = units[slot.unit]
            at = f" at {slot.start:.2f}" if tests else ""
            where = f"worker {slot.worker + 1}{at}: "
            count = f", {len(unit.indices)} test(s)" if tests else ""
            lines.append(f"  {where}{unit.label} (estimate {slot.estimate:.2f}{count})")
    return lines


class Dispatcher:
    """Hands out a plan's units, phase by phase, worker by worker.

    Workers are numbered from 0 here (a run's slot 1 is worker 0). A phase
    starts only when the previous one has nothing left in flight, and never
    has more units in flight than its concurrency. ``requeue`` puts back
    what a lost worker did not finish, first in its worker's queue.
    """

    def __init__(
        self, plan: Plan, units: Sequence[Unit], estimates: Sequence[float]
    ) -> None:
        self._phases = deque(plan.phases)
        self._positions = [position(unit) for unit in units]
        self._estimates = list(estimates)
        self._queues: list[deque[int]] = []
        self._last: dict[int, int] = {}  # worker -> position of its last unit
        self._concurrency = 0
        self._in_flight: set[int] = set()
        self.phase_name = ""
        self._advance()

    def _advance(self) -> None:
        while not self._pending() and not self._in_flight and self._phases:
            phase = self._phases.popleft()
            self._queues = [deque(queue) for queue in phase.queues()]
            self._concurrency = phase.concurrency
            self._last = {}
            self.phase_name = phase.name

    def _pending(self) -> bool:
        return any(self._queues)

    def next_unit(self, worker: int) -> int | None:
        """The unit ``worker`` runs next, or None if it may start none now."""
        self._advance()
        if len(self._in_flight) >= self._concurrency:
            return None
        unit = self._own(worker)
        if unit is None:
            unit = self._steal(worker)
        if unit is not None:
            self._in_flight.add(unit)
            self._last[worker] = self._positions[unit]
        return unit

    def _own(self, worker: int) -> int | None:
        if worker < len(self._queues) and self._queues[worker]:
            return self._queues[worker].popleft()
        return None

    def _steal(self, worker: int) -> int | None:
        """The last unit of the busiest queue that comes after what
        ``worker`` ran last, so its sequence stays in serial order."""
        after = self._last.get(worker, -1)
        by_load = sorted(
            (q for q in self._queues if q),
            key=lambda q: -sum(self._estimates[u] for u in q),
        )
        for queue in by_load:
            if self._positions[queue[-1]] >= after:
                return queue.pop()
        return None

    def finished(self, unit: int) -> None:
        self._in_flight.discard(unit)
        self._advance()

    def requeue(self, unit: int, worker: int) -> None:
        """``unit`` stopped early on ``worker``: the rest of it runs next
        there (a replacement on the same slot), or on whoever takes it."""
        self._in_flight.discard(unit)
        while len(self._queues) <= worker:
            self._queues.append(deque())
        self._queues[worker].appendleft(unit)

    def cancel(self) -> None:
        """Start nothing more (failfast, interrupt)."""
        self._phases.clear()
        for queue in self._queues:
            queue.clear()

    @property
    def done(self) -> bool:
        return not (self._phases or self._pending() or self._in_flight)
