"""Scheduling: a pure function from units and estimates to a plan.

Isolated groups become phases of their own in which nothing else runs: an
``isolated_free`` group's classes run only beside each other, an
``isolated_serial`` group runs alone on one worker. Everything else shares
one phase. Within a phase the longest units go first (LPT), which keeps the
makespan close to ``max(total / workers, longest unit)``.

``Dispatcher`` walks a plan at run time: workers ask for work as they free
up, so a unit that runs longer than estimated delays nothing but itself.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .groups import Strategy, Unit


@dataclass(frozen=True)
class Slot:
    """Where the simulated plan puts a unit: which worker, from when."""

    unit: int
    worker: int
    start: float
    estimate: float


@dataclass
class Phase:
    name: str
    concurrency: int
    units: list[int]  # indices into the unit list, in dispatch order
    slots: list[Slot] = field(default_factory=list)

    @property
    def estimate(self) -> float:
        return max((s.start + s.estimate for s in self.slots), default=0.0)


@dataclass
class Plan:
    workers: int
    phases: list[Phase]

    @property
    def estimate(self) -> float:
        return sum(phase.estimate for phase in self.phases)


def _phase_key(unit: Unit) -> tuple[int, str]:
    if unit.strategy is Strategy.ISOLATED_FREE:
        return (1, f"isolated_free group {unit.group!r}")
    if unit.strategy is Strategy.ISOLATED_SERIAL:
        return (2, f"isolated_serial group {unit.group!r}")
    return (0, "shared")


def _simulate(units: list[int], estimates: Sequence[float], workers: int) -> list[Slot]:
    """Greedy list scheduling: each unit goes to the worker free first."""
    free_at = [(0.0, w) for w in range(workers)]
    slots = []
    for index in units:
        start, worker = heapq.heappop(free_at)
        slots.append(Slot(index, worker, start, estimates[index]))
        heapq.heappush(free_at, (start + estimates[index], worker))
    return slots


def make_plan(units: Sequence[Unit], estimates: Sequence[float], workers: int) -> Plan:
    """Order ``units`` into phases; ``estimates[i]`` is unit i's expected time.

    Deterministic: ties keep discovery order, so the same input (and the same
    ``--shuffle`` seed) always gives the same plan.
    """
    if len(estimates) != len(units):
        raise ValueError("one estimate per unit is needed")
    phases: dict[tuple[int, str], list[int]] = {}
    for index, unit in enumerate(units):
        phases.setdefault(_phase_key(unit), []).append(index)
    width = max(1, workers)
    plan_phases = []
    # Shared work first, then isolated groups in discovery order within kind.
    for key in sorted(phases, key=lambda k: (k[0], min(phases[k]))):
        members = sorted(phases[key], key=lambda i: (-estimates[i], i))
        concurrency = 1 if key[0] == 2 else min(width, len(members))
        phase = Phase(key[1], concurrency, members)
        phase.slots = _simulate(members, estimates, concurrency)
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
        for slot in phase.slots:
            unit = units[slot.unit]
            where = f"worker {slot.worker + 1} at {slot.start:.2f}: " if tests else ""
            count = f", {len(unit.indices)} test(s)" if tests else ""
            lines.append(f"  {where}{unit.label} (estimate {slot.estimate:.2f}{count})")
    return lines


class Dispatcher:
    """Hands out a plan's units one phase at a time.

    A phase starts only when the previous one has nothing left in flight;
    ``requeue`` puts back what a dead worker did not finish, ahead of the
    rest of its phase.
    """

    def __init__(self, plan: Plan) -> None:
        self._phases = deque(plan.phases)
        self._pending: deque[int] = deque()
        self._concurrency = 0
        self._in_flight: set[int] = set()
        self.phase_name = ""
        self._advance()

    def _advance(self) -> None:
        while not self._pending and not self._in_flight and self._phases:
            phase = self._phases.popleft()
            self._pending = deque(phase.units)
            self._concurrency = phase.concurrency
            self.phase_name = phase.name

    def next_unit(self) -> int | None:
        """The next unit to start now, or None if none may start yet."""
        self._advance()
        if not self._pending or len(self._in_flight) >= self._concurrency:
            return None
        unit = self._pending.popleft()
        self._in_flight.add(unit)
        return unit

    def finished(self, unit: int) -> None:
        self._in_flight.discard(unit)
        self._advance()

    def requeue(self, unit: int) -> None:
        """``unit`` stopped early; run (the rest of) it again in this phase."""
        self._in_flight.discard(unit)
        self._pending.appendleft(unit)

    def cancel(self) -> None:
        """Start nothing more (failfast, interrupt)."""
        self._phases.clear()
        self._pending.clear()

    @property
    def done(self) -> bool:
        return not (self._phases or self._pending or self._in_flight)
