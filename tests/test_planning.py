"""concurrent_runner.planning.plan: phases, LPT order, and the run-time Dispatcher."""

from __future__ import annotations

import random
import unittest

from concurrent_runner.planning.groups import Strategy, Unit
from concurrent_runner.planning.plan import Dispatcher, Plan, Slot, make_plan

FREE = Strategy.FREE
SERIAL = Strategy.SERIAL
ISO_FREE = Strategy.ISOLATED_FREE
ISO_SERIAL = Strategy.ISOLATED_SERIAL


def unit(name: str, strategy: Strategy = FREE, group: str | None = None) -> Unit:
    key = f"group:{group}" if strategy.whole_group else f"app.{name}"
    return Unit(key=key, group=group, strategy=strategy, classes=[f"app.{name}"])


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
        self.assertEqual(
            [s.unit for p in first.phases for s in p.slots],
            [u for p in first.phases for u in p.units],
        )

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
        # Given in another order; LPT takes 5, 3, 3, 1.
        units = [unit(f"C{i}") for i in range(4)]
        plan = make_plan(units, [3.0, 1.0, 5.0, 3.0], workers=2)
        phase = plan.phases[0]
        self.assertEqual(phase.units, [2, 0, 3, 1])
        self.assertEqual(
            phase.slots,
            [
                Slot(unit=2, worker=0, start=0.0, estimate=5.0),
                Slot(unit=0, worker=1, start=0.0, estimate=3.0),
                Slot(unit=3, worker=1, start=3.0, estimate=3.0),
                Slot(unit=1, worker=0, start=5.0, estimate=1.0),
            ],
        )
        finish: dict[int, float] = {}
        for slot in phase.slots:
            finish[slot.worker] = max(
                finish.get(slot.worker, 0.0), slot.start + slot.estimate
            )
        self.assertEqual(finish, {0: 6.0, 1: 6.0})
        self.assertEqual(phase.estimate, 6.0)
        self.assertEqual(plan.estimate, 6.0)

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
        dispatcher = Dispatcher(plan)
        self.assertTrue(dispatcher.done)
        self.assertIsNone(dispatcher.next_unit())


class DispatcherTests(unittest.TestCase):
    def test_phase_barrier(self) -> None:
        units = [
            unit("A"),
            unit("B"),
            unit("C"),
            unit("I1", ISO_FREE, "i"),
            unit("I2", ISO_FREE, "i"),
        ]
        d = Dispatcher(make_plan(units, [3.0, 2.0, 1.0, 1.0, 1.0], workers=2))
        self.assertEqual(d.phase_name, "shared")
        self.assertEqual(d.next_unit(), 0)
        self.assertEqual(d.next_unit(), 1)
        self.assertIsNone(d.next_unit())  # two in flight, concurrency 2
        d.finished(0)
        self.assertEqual(d.next_unit(), 2)
        d.finished(1)
        # Unit 2 of the shared phase still runs: nothing isolated may start.
        self.assertIsNone(d.next_unit())
        self.assertIsNone(d.next_unit())
        d.finished(2)
        self.assertEqual(d.next_unit(), 3)
        self.assertEqual(d.phase_name, "isolated_free group 'i'")
        self.assertEqual(d.next_unit(), 4)
        self.assertFalse(d.done)
        d.finished(3)
        d.finished(4)
        self.assertTrue(d.done)
        self.assertIsNone(d.next_unit())

    def test_isolated_serial_runs_alone(self) -> None:
        units = [unit("Z", ISO_SERIAL, "z"), unit("W", ISO_SERIAL, "w"), unit("A")]
        d = Dispatcher(make_plan(units, [1.0, 1.0, 1.0], workers=4))
        self.assertEqual(d.next_unit(), 2)
        self.assertIsNone(d.next_unit())
        d.finished(2)
        self.assertEqual(d.next_unit(), 0)
        self.assertIsNone(d.next_unit())  # W is another group: not beside Z
        d.finished(0)
        self.assertEqual(d.next_unit(), 1)
        self.assertIsNone(d.next_unit())
        d.finished(1)
        self.assertTrue(d.done)

    def test_requeue_goes_to_the_front(self) -> None:
        units = [unit(f"C{i}") for i in range(4)]
        d = Dispatcher(make_plan(units, [4.0, 3.0, 2.0, 1.0], workers=2))
        self.assertEqual([d.next_unit(), d.next_unit()], [0, 1])
        d.requeue(1)
        self.assertEqual(d.next_unit(), 1)  # ahead of 2 and 3
        d.finished(0)
        self.assertEqual(d.next_unit(), 2)

    def test_requeue_in_isolated_phase_keeps_the_phase(self) -> None:
        units = [unit("A"), unit("Z", ISO_SERIAL, "z"), unit("B")]
        d = Dispatcher(make_plan(units, [1.0, 1.0, 1.0], workers=2))
        d.finished(d.next_unit())  # type: ignore[arg-type]
        d.finished(d.next_unit())  # type: ignore[arg-type]
        self.assertEqual(d.next_unit(), 1)
        d.requeue(1)
        self.assertFalse(d.done)
        self.assertEqual(d.next_unit(), 1)
        d.finished(1)
        self.assertTrue(d.done)

    def test_cancel_stops_handing_out(self) -> None:
        units = [unit(f"C{i}") for i in range(3)] + [unit("Z", ISO_SERIAL, "z")]
        d = Dispatcher(make_plan(units, [1.0] * 4, workers=2))
        first = d.next_unit()
        self.assertIsNotNone(first)
        d.cancel()
        self.assertIsNone(d.next_unit())
        self.assertFalse(d.done)  # one still in flight
        d.finished(first)  # type: ignore[arg-type]
        self.assertTrue(d.done)
        self.assertIsNone(d.next_unit())

    def test_done(self) -> None:
        d = Dispatcher(make_plan([unit("A")], [1.0], workers=1))
        self.assertFalse(d.done)
        self.assertEqual(d.next_unit(), 0)
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
        estimates = [rng.choice([0.0, 0.5, 1.0, 2.0, 10.0]) for _ in units]
        plan = make_plan(units, estimates, workers=rng.randint(1, 6))
        d = Dispatcher(plan)
        completed = [0] * len(units)
        started = [0] * len(units)
        requeued = [0] * len(units)
        in_flight: list[int] = []
        steps = 0
        while not d.done:
            steps += 1
            self.assertLess(steps, 10_000, "dispatcher did not finish")
            while len(in_flight) < plan.workers:
                index = d.next_unit()
                if index is None:
                    break
                self.assertNotIn(index, in_flight)
                started[index] += 1
                in_flight.append(index)
                self.check_together([units[i] for i in in_flight])
            self.assertTrue(in_flight, "nothing in flight and nothing handed out")
            index = in_flight.pop(rng.randrange(len(in_flight)))
            if requeued[index] < 2 and rng.random() < 0.1:
                requeued[index] += 1
                d.requeue(index)
            else:
                completed[index] += 1
                d.finished(index)
        self.assertEqual(in_flight, [])
        self.assertEqual(completed, [1] * len(units))
        self.assertEqual(started, [1 + r for r in requeued])

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
