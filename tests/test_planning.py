"""concurrent_runner.planning.plan: phases, LPT order, and the run-time Dispatcher."""

from __future__ import annotations

import itertools
import random
import unittest

from concurrent_runner.planning.groups import Strategy, Unit
from concurrent_runner.planning.plan import Dispatcher, Plan, Slot, make_plan

FREE = Strategy.FREE
SERIAL = Strategy.SERIAL
ISO_FREE = Strategy.ISOLATED_FREE
ISO_SERIAL = Strategy.ISOLATED_SERIAL


_positions = itertools.count()


def unit(
    name: str,
    strategy: Strategy = FREE,
    group: str | None = None,
    at: int | None = None,
) -> Unit:
    """A unit whose one test stands at ``at`` in the serial order (by
    default, after every unit made before it)."""
    key = f"group:{group}" if strategy.whole_group else f"app.{name}"
    position = next(_positions) if at is None else at
    return Unit(
        key=key,
        group=group,
        strategy=strategy,
        classes=[f"app.{name}"],
        indices=[position],
    )


def phase_units(plan: Plan) -> list[list[int]]:
    return [phase.units for phase in plan.phases]


class MakePlanTests(unittest.TestCase):
    def test_phases_shared_then_isolated_free_then_isolated_serial(self) -> None:
        units = [
            unit("Z1", ISO_SERIAL, "z"),  # 0
            unit("A", FREE),  # 1
            unit("X1", ISO_FREE, "x"),  # 2
            unit("S", SERIAL, "s"),  # 3
            unit("Y1", ISO_FREE, "y"),  # 4
            unit("W1", ISO_SERIAL, "w"),  # 5
            unit("X2", ISO_FREE, "x"),  # 6
            unit("B", FREE, "grouped"),  # 7
        ]
        plan = make_plan(units, [1.0] * len(units), workers=4)
        self.assertEqual(
            [p.name for p in plan.phases],
            [
                "shared",
                "isolated_free group 'x'",
                "isolated_free group 'y'",
                "isolated_serial group 'z'",
                "isolated_serial group 'w'",
            ],
        )
        self.assertEqual(phase_units(plan), [[1, 3, 7], [2, 6], [4], [0], [5]])
        self.assertEqual([p.concurrency for p in plan.phases], [3, 2, 1, 1, 1])

    def test_isolated_serial_phase_has_concurrency_one(self) -> None:
        plan = make_plan([unit("Z", ISO_SERIAL, "z")], [100.0], workers=8)
        self.assertEqual(plan.phases[0].concurrency, 1)
        self.assertEqual(plan.workers, 1)

    def test_isolated_free_phase_is_capped_by_workers(self) -> None:
        units = [unit(f"I{i}", ISO_FREE, "i") for i in range(5)]
        plan = make_plan(units, [1.0] * 5, workers=3)
        self.assertEqual(plan.phases[0].concurrency, 3)
        self.assertEqual(plan.workers, 3)

    def test_lpt_order_with_ties_in_discovery_order(self) -> None:
        units = [unit(f"C{i}") for i in range(6)]
        estimates = [2.0, 7.0, 2.0, 9.0, 7.0, 0.5]
        plan = make_plan(units, estimates, workers=2)
        self.assertEqual(phase_units(plan), [[3, 1, 4, 0, 2, 5]])

    def test_lpt_within_isolated_phase(self) -> None:
        units = [unit("A", ISO_FREE, "g"), unit("B", ISO_FREE, "g"), unit("C")]
        plan = make_plan(units, [1.0, 5.0, 3.0], workers=2)
        self.assertEqual(phase_units(plan), [[2], [1, 0]])

    def test_deterministic(self) -> None:
        rng = random.Random(7)
        strategies = list(Strategy)
        units = [
            unit(f"C{i}", rng.choice(strategies), rng.choice("abc")) for i in range(30)
        ]
        estimates = [float(rng.randint(0, 5)) for _ in units]
        first = make_plan(units, estimates, workers=4)
        second = make_plan(list(units), list(estimates), workers=4)
        self.assertEqual(first, second)
        # Every unit has one slot, on a worker of its phase.
        for phase in first.phases:
            self.assertEqual(sorted(s.unit for s in phase.slots), sorted(phase.units))
            for slot in phase.slots:
                self.assertLess(slot.worker, phase.concurrency)

    def test_workers_is_min_of_requested_and_widest_phase(self) -> None:
        units = [unit(f"C{i}") for i in range(3)] + [
            unit(f"I{i}", ISO_FREE, "i") for i in range(5)
        ]
        estimates = [1.0] * len(units)
        self.assertEqual(make_plan(units, estimates, workers=8).workers, 5)
        self.assertEqual(make_plan(units, estimates, workers=4).workers, 4)
        self.assertEqual(make_plan(units[:3], estimates[:3], workers=8).workers, 3)
        self.assertEqual(make_plan(units, estimates, workers=1).workers, 1)
        self.assertEqual(make_plan(units, estimates, workers=0).workers, 1)

    def test_lpt_slots(self) -> None:
        # Given in another order; LPT deals 5, 3, 3, 1 to the least loaded
        # worker, and each worker runs its share in serial order.
        units = [unit(f"C{i}") for i in range(4)]
        plan = make_plan(units, [3.0, 1.0, 5.0, 3.0], workers=2)
        phase = plan.phases[0]
        self.assertEqual(phase.units, [2, 0, 3, 1])
        self.assertEqual(
            sorted(phase.slots, key=lambda s: (s.worker, s.start)),
            [
                Slot(unit=1, worker=0, start=0.0, estimate=1.0),
                Slot(unit=2, worker=0, start=1.0, estimate=5.0),
                Slot(unit=0, worker=1, start=0.0, estimate=3.0),
                Slot(unit=3, worker=1, start=3.0, estimate=3.0),
            ],
        )
        self.assertEqual(phase.queues(), [[1, 2], [0, 3]])
        self.assertEqual(phase.estimate, 6.0)
        self.assertEqual(plan.estimate, 6.0)

    def test_each_worker_runs_its_share_in_serial_order(self) -> None:
        # Serial order: TestCase classes first (Django's reorder_by), here
        # positions 0-2, then TransactionTestCase classes, 3-5.
        units = [unit(f"C{i}", at=i) for i in range(6)]
        estimates = [1.0, 1.0, 1.0, 9.0, 1.0, 1.0]
        plan = make_plan(units, estimates, workers=2)
        for queue in plan.phases[0].queues():
            positions = [units[u].indices[0] for u in queue]
            self.assertEqual(positions, sorted(positions))
        # LPT still balances: the long one alone on a worker.
        self.assertEqual(sorted(map(len, plan.phases[0].queues())), [1, 5])

    def test_plan_estimate_sums_phases(self) -> None:
        units = [unit(f"C{i}") for i in range(4)] + [
            unit("Z", ISO_SERIAL, "z"),
            unit("I1", ISO_FREE, "i"),
            unit("I2", ISO_FREE, "i"),
        ]
        plan = make_plan(units, [5.0, 3.0, 3.0, 1.0, 4.0, 2.0, 2.5], workers=2)
        self.assertEqual([p.estimate for p in plan.phases], [6.0, 2.5, 4.0])
        self.assertEqual(plan.estimate, 12.5)

    def test_estimates_must_match_units(self) -> None:
        with self.assertRaises(ValueError):
            make_plan([unit("A"), unit("B")], [1.0], workers=2)

    def test_empty(self) -> None:
        plan = make_plan([], [], workers=4)
        self.assertEqual(plan.phases, [])
        self.assertEqual(plan.estimate, 0.0)
        self.assertEqual(plan.workers, 1)
        dispatcher = Dispatcher(plan, [], [])
        self.assertTrue(dispatcher.done)
        self.assertIsNone(dispatcher.next_unit(0))


def dispatcher(units: list[Unit], estimates: list[float], workers: int) -> Dispatcher:
    return Dispatcher(make_plan(units, estimates, workers), units, estimates)


class DispatcherTests(unittest.TestCase):
    def test_phase_barrier(self) -> None:
        units = [
            unit("A"),
            unit("B"),
            unit("C"),
            unit("I1", ISO_FREE, "i"),
            unit("I2", ISO_FREE, "i"),
        ]
        d = dispatcher(units, [3.0, 2.0, 1.0, 1.0, 1.0], workers=2)
        self.assertEqual(d.phase_name, "shared")
        self.assertEqual(d.next_unit(0), 0)
        self.assertEqual(d.next_unit(1), 1)
        self.assertIsNone(d.next_unit(2))  # two in flight, concurrency 2
        d.finished(1)
        self.assertEqual(d.next_unit(1), 2)
        d.finished(0)
        # Unit 2 of the shared phase still runs: nothing isolated may start.
        self.assertIsNone(d.next_unit(0))
        d.finished(2)
        self.assertEqual(d.next_unit(0), 3)
        self.assertEqual(d.phase_name, "isolated_free group 'i'")
        self.assertEqual(d.next_unit(1), 4)
        self.assertFalse(d.done)
        d.finished(3)
        d.finished(4)
        self.assertTrue(d.done)
        self.assertIsNone(d.next_unit(0))

    def test_isolated_serial_runs_alone(self) -> None:
        units = [unit("Z", ISO_SERIAL, "z"), unit("W", ISO_SERIAL, "w"), unit("A")]
        d = dispatcher(units, [1.0, 1.0, 1.0], workers=4)
        self.assertEqual(d.next_unit(0), 2)
        self.assertIsNone(d.next_unit(1))
        d.finished(2)
        self.assertEqual(d.next_unit(1), 0)
        self.assertIsNone(d.next_unit(0))  # W is another group: not beside Z
        d.finished(0)
        self.assertEqual(d.next_unit(2), 1)
        self.assertIsNone(d.next_unit(0))
        d.finished(1)
        self.assertTrue(d.done)

    def test_a_worker_takes_its_own_queue_in_serial_order(self) -> None:
        units = [unit(f"C{i}") for i in range(4)]
        d = dispatcher(units, [4.0, 1.0, 1.0, 2.0], workers=2)
        # LPT: worker 0 gets 0 (4.0); worker 1 gets 3, 1, 2 (4.0 in all).
        self.assertEqual(d.next_unit(1), 1)
        d.finished(1)
        self.assertEqual(d.next_unit(1), 2)
        d.finished(2)
        self.assertEqual(d.next_unit(1), 3)

    def test_an_idle_worker_steals_only_what_comes_later(self) -> None:
        units = [unit(f"C{i}") for i in range(4)]
        d = dispatcher(units, [1.0, 1.0, 1.0, 3.0], workers=2)
        # LPT: worker 0 gets 3; worker 1 gets 0, 1, 2.
        self.assertEqual(d.next_unit(0), 3)
        d.finished(3)
        # Worker 0 ran position 3: nothing of worker 1's comes after it.
        self.assertIsNone(d.next_unit(0))
        d2 = dispatcher(units, [1.0, 1.0, 1.0, 3.0], workers=2)
        self.assertEqual(d2.next_unit(1), 0)
        # Worker 0 has run nothing yet: it takes the last of worker 1's
        # queue, after its own (unit 3) is gone.
        self.assertEqual(d2.next_unit(0), 3)
        d2.finished(3)
        self.assertIsNone(d2.next_unit(0))  # 1 and 2 come before 3

    def test_requeue_goes_to_the_front_of_its_worker(self) -> None:
        units = [unit(f"C{i}") for i in range(4)]
        d = dispatcher(units, [4.0, 3.0, 2.0, 1.0], workers=2)
        self.assertEqual([d.next_unit(0), d.next_unit(1)], [0, 1])
        d.requeue(1, 1)
        self.assertEqual(d.next_unit(1), 1)  # ahead of its queue's others
        d.finished(0)
        d.finished(1)
        self.assertEqual(d.next_unit(1), 2)

    def test_requeue_in_isolated_phase_keeps_the_phase(self) -> None:
        units = [unit("A"), unit("Z", ISO_SERIAL, "z"), unit("B")]
        d = dispatcher(units, [1.0, 1.0, 1.0], workers=2)
        d.finished(d.next_unit(0))  # type: ignore[arg-type]
        d.finished(d.next_unit(1))  # type: ignore[arg-type]
        self.assertEqual(d.next_unit(0), 1)
        d.requeue(1, 0)
        self.assertFalse(d.done)
        self.assertEqual(d.next_unit(0), 1)
        d.finished(1)
        self.assertTrue(d.done)

    def test_cancel_stops_handing_out(self) -> None:
        units = [unit(f"C{i}") for i in range(3)] + [unit("Z", ISO_SERIAL, "z")]
        d = dispatcher(units, [1.0] * 4, workers=2)
        first = d.next_unit(0)
        self.assertIsNotNone(first)
        d.cancel()
        self.assertIsNone(d.next_unit(1))
        self.assertFalse(d.done)  # one still in flight
        d.finished(first)  # type: ignore[arg-type]
        self.assertTrue(d.done)
        self.assertIsNone(d.next_unit(0))

    def test_done(self) -> None:
        d = dispatcher([unit("A")], [1.0], workers=1)
        self.assertFalse(d.done)
        self.assertEqual(d.next_unit(0), 0)
        self.assertFalse(d.done)
        d.finished(0)
        self.assertTrue(d.done)


def random_units(rng: random.Random) -> list[Unit]:
    units: list[Unit] = []
    for g in range(rng.randint(0, 6)):
        strategy = rng.choice(list(Strategy))
        name = f"g{g}"
        if strategy.whole_group:
            units.append(unit(f"{name}C", strategy, name))
        else:
            units.extend(
                unit(f"{name}C{i}", strategy, name) for i in range(rng.randint(1, 5))
            )
    units.extend(unit(f"Plain{i}") for i in range(rng.randint(0, 8)))
    rng.shuffle(units)
    return units


class DispatcherPropertyTests(unittest.TestCase):
    def check(self, seed: int) -> None:
        rng = random.Random(seed)
        units = random_units(rng)
        for position, u in enumerate(units):
            u.indices = [position]
        estimates = [rng.choice([0.0, 0.5, 1.0, 2.0, 10.0]) for _ in units]
        plan = make_plan(units, estimates, workers=rng.randint(1, 6))
        d = Dispatcher(plan, units, estimates)
        completed = [0] * len(units)
        started = [0] * len(units)
        requeued = [0] * len(units)
        running: dict[int, int] = {}  # worker -> unit
        ran: dict[tuple[str, int], list[int]] = {}  # (phase, worker) -> positions
        steps = 0
        while not d.done:
            steps += 1
            self.assertLess(steps, 10_000, "dispatcher did not finish")
            for worker in range(plan.workers):
                if worker in running:
                    continue
                index = d.next_unit(worker)
                if index is None:
                    continue
                self.assertNotIn(index, running.values())
                started[index] += 1
                running[worker] = index
                ran.setdefault((d.phase_name, worker), []).append(index)
                self.check_together([units[i] for i in running.values()])
            self.assertTrue(running, "nothing in flight and nothing handed out")
            worker = rng.choice(list(running))
            index = running.pop(worker)
            if requeued[index] < 2 and rng.random() < 0.1:
                requeued[index] += 1
                d.requeue(index, worker)
            else:
                completed[index] += 1
                d.finished(index)
        self.assertEqual(running, {})
        self.assertEqual(completed, [1] * len(units))
        self.assertEqual(started, [1 + r for r in requeued])
        for sequence in ran.values():
            # Within a phase, what a worker runs is in serial order (a
            # requeued unit runs again right away, on the same worker).
            self.assertEqual(sequence, sorted(sequence))

    def check_together(self, running: list[Unit]) -> None:
        isolated = [u for u in running if u.strategy.isolated]
        if not isolated:
            return
        first = isolated[0]
        for other in running:
            # An isolated unit runs only beside units of its own group.
            self.assertTrue(other.strategy.isolated, running)
            self.assertEqual(other.group, first.group, running)
            self.assertIs(other.strategy, first.strategy, running)
        if first.strategy is ISO_SERIAL:
            self.assertEqual(len(running), 1, running)

    def test_random_runs(self) -> None:
        for seed in range(200):
            with self.subTest(seed=seed):
                self.check(seed)
