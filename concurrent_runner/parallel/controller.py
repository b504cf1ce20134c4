"""The parent's scheduling state for one parallel run, without any I/O.

``RunController`` knows, per worker slot, what its worker is doing: started,
said hello, has its databases, runs which unit, which test or which class or
module fixture. Events come in as method calls from the loop (``loop``),
which reads the workers' pipes and watches their processes; what must be
done goes out through ``WorkerControl`` (start a worker on a slot, send it a
message) and ``RunReport`` (replay a test, report an error), and what
happened goes to ``RunListener``s (progress lines, the timeline). Tests
drive it with fakes that only record what they are given.

A worker that dies or hangs costs only what was in flight: the test it ran
is an error, or the class or module fixture it ran is (as unittest names
such errors, ``setUpClass (app.tests.Cls)``), and the rest of its unit goes
first in its slot's queue, for the replacement started on that slot (same
databases). A run that loses a worker never passes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ConfigurationError
from ..planning.groups import Unit
from ..planning.plan import Dispatcher, Plan
from . import protocol as p
from .endings import EndKind, WorkerEnding

#: After how many losses of a worker that made no progress in a unit (no
#: test and no fixture started) the unit is given up as not run.
GIVE_UP_AFTER = 2


class WorkerStartupError(ConfigurationError):
    """A worker could not get as far as running tests."""


class WorkerCrashed(Exception):
    """A worker process ended while running a test or a fixture."""


class TestInterrupted(Exception):
    """The run was interrupted while this test ran; its outcome is unknown."""


@dataclass(frozen=True)
class TestInfo:
    """What the controller knows of one test of the suite."""

    id: str
    class_label: str  # "module.Class"
    module: str


class WorkerControl(Protocol):
    """The loop's side: processes and pipes."""

    def start(self, slot: int, generation: int) -> None: ...

    def send(self, slot: int, message: object) -> None: ...


class RunReport(Protocol):
    """The result's side: everything that ends up in the unittest result."""

    def test(self, index: int, record: p.TestRecord) -> None: ...

    def fixture(self, message: p.FixtureOutcome) -> None: ...

    def output(self, stdout: bytes, stderr: bytes) -> None: ...

    def test_error(self, index: int, error: Exception) -> None: ...

    def fixture_error(self, description: str, error: Exception) -> None: ...

    @property
    def should_stop(self) -> bool: ...


class RunListener:
    """Follows the run (progress, timeline); every method may be left out."""

    def worker_starting(self, slot: int) -> None:
        pass

    def worker_ready(self, slot: int, ready_at: float | None) -> None:
        pass

    def unit_started(self, slot: int, unit: int, phase: str) -> None:
        pass

    def test_done(self, slot: int, record: p.TestRecord) -> None:
        pass

    def fixture_failed(self, slot: int) -> None:
        pass

    def unit_ended(self, slot: int, unit: int, outcome: str) -> None:
        """Its worker is done with it: "passed", "failed" or "crashed" (the
        rest of it may run again, on a new worker)."""

    def unit_finished(self, unit: int) -> None:
        """Every test of the unit is accounted for."""

    def test_errored(self, slot: int, index: int) -> None:
        """The parent reported an error for a test on ``slot`` (its worker
        died, or it could not be run there)."""

    def reporting(self, starts: bool) -> None:
        """Something is about to be written to the result (``starts``), or
        has been: a status line drawn in place makes way, then comes back."""

    def tick(self, now: float) -> None:
        """The loop goes round (at least every half second)."""

    def run_ended(self) -> None:
        """No more tests will be reported."""


@dataclass
class SlotState:
    """One worker slot and the worker on it now."""

    slot: int
    generation: int = -1
    alive: bool = False  # a worker was started and is not known to be gone
    started_at: float = 0.0
    ready: bool = False  # its worker said hello
    databases_ready: bool = False  # its databases exist (for every worker)
    configured: bool = False  # its worker was sent Configure
    leaving: bool = False  # told to stop, or gave up its unit: give it nothing
    index_map: dict[int, int] = field(default_factory=dict)  # parent -> worker
    reverse_map: dict[int, int] = field(default_factory=dict)
    import_errors: dict[str, str] = field(default_factory=dict)
    unit: int | None = None
    unit_started: float = 0.0
    progressed: bool = False  # a test or fixture of its unit started
    failed: bool = False  # something in its unit failed
    in_flight: int | None = None  # the parent index of the running test
    fixture: p.FixtureStarted | None = None  # the class or module fixture running
    #: Databases a TransactionTestCase flushed (see ``RunUnit.flushed``);
    #: kept by the slot, since a replacement works on the same databases.
    flushed: list[str] | None = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return self.alive and self.unit is not None


class RunController:
    def __init__(
        self,
        tests: Sequence[TestInfo],
        units: Sequence[Unit],
        plan: Plan,
        estimates: Sequence[float],
        *,
        workers: WorkerControl,
        listeners: Sequence[RunListener] = (),
        group_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tests = list(tests)
        self.units = list(units)
        self.plan = plan
        self.workers = workers
        self.report: RunReport | None = None  # the result, once the run starts
        self.listeners = list(listeners)
        self.group_timeout = group_timeout
        self.clock = clock
        self.dispatcher = Dispatcher(plan, units, estimates)
        self.slots = {s: SlotState(s) for s in range(1, plan.workers + 1)}
        self.configs: dict[int, p.Configure] = {}
        self.remaining = {i: list(u.indices) for i, u in enumerate(self.units)}
        #: Seconds per test class, measured by the workers.
        self.measured: dict[str, float] = {}
        #: Seconds per test (by id), measured by the workers: its own time,
        #: then (UnitDone) its share of its class's (protocol.UnitDone).
        self.measured_tests: dict[str, float] = {}
        #: A split class's chunks that ended: label -> [(chunk's time, its
        #: tests' time)], from which the class's time is recorded as if whole.
        self._chunk_times: dict[str, list[tuple[float, float]]] = {}
        self.stopped_at: float | None = None  # failfast: start nothing more
        self.interrupted: str | None = None  # the signal's name
        self._losses: dict[int, int] = {}  # unit -> losses without progress
        self._fixtures_reported: set[tuple[str, type]] = set()
        #: unit -> a test whose worker died in it: the unit's next worker
        #: runs its class's and module's fixtures (not it), so that the
        #: teardowns that would have followed it run.
        self._crashed_in: dict[int, int] = {}
        #: unit -> a test of a class whose worker died in a class fixture:
        #: the unit's next worker runs its module's fixtures, so that the
        #: module's teardown, due after the class, runs.
        self._crashed_in_class_fixture: dict[int, int] = {}

    # -- the run as a whole ------------------------------------------------

    @property
    def finished(self) -> bool:
        if self.interrupted:
            return True
        busy = any(state.busy for state in self.slots.values())
        return not busy and (self.dispatcher.done or self.stopped_at is not None)

    def busy_slots(self) -> list[int]:
        return [s for s, state in self.slots.items() if state.busy]

    def running(self) -> list[str]:
        """Short labels of the units running now."""
        return [
            self.units[state.unit].short_label
            for state in self.slots.values()
            if state.busy and state.unit is not None
        ]

    def start(self) -> None:
        """Start a worker on every slot."""
        for slot in self.slots:
            self._start(slot)

    def configure(self, configs: dict[int, p.Configure]) -> None:
        """What each slot's worker is sent once the slot's databases exist."""
        self.configs = dict(configs)
        for slot in self.slots:
            self._send_configure(slot)

    def stop(self) -> None:
        """Failfast: start nothing more, let the tests in flight finish, and
        report nothing that finishes from now on."""
        if self.stopped_at is not None:
            return
        self.stopped_at = self.clock()
        self.dispatcher.cancel()
        for slot, state in self.slots.items():
            if state.alive:
                state.leaving = True
                if state.busy:
                    self.workers.send(slot, p.Stop())

    def interrupt(self, signal_name: str) -> list[str]:
        """Ctrl-C or SIGTERM: the tests in flight are errors (their workers
        are ended, their outcome unknown); returns their ids."""
        self.interrupted = signal_name
        self.dispatcher.cancel()
        names = []
        for state in self.slots.values():
            if state.busy and state.in_flight is not None:
                test = self.tests[state.in_flight]
                names.append(test.id)
                self._account(state.slot, state.in_flight)
                self._test_error(
                    state.slot,
                    state.in_flight,
                    TestInterrupted(
                        f"The run was interrupted ({signal_name}) while "
                        f"{test.id} was running; its outcome is unknown."
                    ),
                )
            state.alive = False
        return names

    def not_run(self) -> int:
        """How many selected tests were neither run nor reported."""
        return sum(len(indices) for indices in self.remaining.values())

    # -- events from a worker ------------------------------------------------

    def worker_ready(
        self,
        slot: int,
        test_ids: Sequence[str],
        import_errors: dict[str, str] | None = None,
        ready_at: float | None = None,
    ) -> None:
        """Its hello: map our test indices to its own, by test id, in order."""
        state = self.slots[slot]
        expected = [test.id for test in self.tests]
        if list(test_ids) == expected:
            state.index_map = {i: i for i in range(len(expected))}
        else:
            positions: dict[str, list[int]] = {}
            for i, test_id in enumerate(test_ids):
                positions.setdefault(test_id, []).append(i)
            state.index_map = {
                i: positions[test_id].pop(0)
                for i, test_id in enumerate(expected)
                if positions.get(test_id)
            }
        state.reverse_map = {w: i for i, w in state.index_map.items()}
        state.import_errors = dict(import_errors or {})
        state.ready = True
        for listener in self.listeners:
            listener.worker_ready(slot, ready_at)

    def databases_ready(self, slot: int) -> None:
        self.slots[slot].databases_ready = True
        self._send_configure(slot)

    def test_started(self, slot: int, worker_index: int) -> None:
        state = self.slots[slot]
        state.in_flight = state.reverse_map[worker_index]
        state.fixture = None
        state.progressed = True

    def fixture_started(self, slot: int, fixture: p.FixtureStarted) -> None:
        state = self.slots[slot]
        state.fixture = fixture
        state.in_flight = None
        state.progressed = True

    def test_done(self, slot: int, record: p.TestRecord) -> None:
        state = self.slots[slot]
        index = state.reverse_map[record.index]
        record.index = index
        state.in_flight = None
        self._account(slot, index)
        if record.duration is not None and record.started:
            self.measured_tests[self.tests[index].id] = record.duration
        if self._reporting:
            with self._writing():
                self._report().test(index, record)
                if record.failed:
                    state.failed = True
                for listener in self.listeners:
                    listener.test_done(slot, record)
            self._check_stop()

    def fixture_outcome(self, slot: int, message: p.FixtureOutcome) -> None:
        """A class or module fixture failed or skipped (setUpClass ...).

        Reported once: a module's fixtures run in every unit that holds its
        classes (as under Django's --parallel), a class's in every chunk of
        it, where serially each runs once."""
        state = self.slots[slot]
        fixture = state.fixture
        if (
            state.unit is not None
            and fixture is not None
            and fixture.sets_up
            and fixture.description == message.description
        ):
            # Its tests will not run here, as in unittest: a worker that
            # dies later in this unit must not hand them to another, which
            # would fail the same way and die the same way, for ever.
            self._drop_covered_by(state.unit, fixture.target)
        if not self._reporting or self._seen_before(
            message.description, type(message.outcome)
        ):
            return
        with self._writing():
            self._report().fixture(message)
            if isinstance(message.outcome, p.Error):
                self.slots[slot].failed = True
                for listener in self.listeners:
                    listener.fixture_failed(slot)
        self._check_stop()

    def unit_output(self, slot: int, stdout: bytes, stderr: bytes) -> None:
        """What a unit wrote outside any test (its fixtures)."""
        if self._reporting:
            with self._writing():
                self._report().output(stdout, stderr)

    def unit_done(
        self,
        slot: int,
        unit: int,
        class_durations: dict[str, float],
        flushed: list[str] | None,
        test_durations: dict[int, float] | None = None,
    ) -> None:
        state = self.slots[slot]
        for worker_index, seconds in (test_durations or {}).items():
            index = state.reverse_map.get(worker_index)
            if index is not None:
                self.measured_tests[self.tests[index].id] = seconds
        self._measure(unit, class_durations)
        state.flushed = flushed
        self._unit_over(slot, "failed" if state.failed else "passed")
        # What a failfast stop inside the worker left is not run, as serially.
        self.remaining[unit] = []
        self._finish(unit)

    def _measure(self, unit: int, class_durations: dict[str, float]) -> None:
        """Record what a unit's classes took. A chunk of a split class is
        recorded as the whole class would have taken: all its tests' times
        plus its fixtures once (the chunks' mean), so that the durations
        file stays per class and the fixture time read back from it (the
        class's time minus its tests') is one chunk's, not their sum."""
        chunk = self.units[unit]
        if chunk.chunk is None:
            self.measured.update(class_durations)
            return
        label = chunk.classes[0]
        took = class_durations.get(label)
        if took is None:
            return
        ids = [self.tests[i].id for i in chunk.indices]
        own = sum(self.measured_tests.get(test_id, 0.0) for test_id in ids)
        chunks = self._chunk_times.setdefault(label, [])
        chunks.append((took, own))
        fixtures = sum(max(0.0, t - o) for t, o in chunks) / len(chunks)
        prefix = label + "."
        tests = sum(
            seconds
            for test_id, seconds in self.measured_tests.items()
            if test_id.startswith(prefix) and test_id.rsplit(".", 1)[0] == label
        )
        self.measured[label] = fixtures + tests

    def unit_abandoned(self, slot: int, unit: int, retry: bool) -> None:
        """A test raised KeyboardInterrupt: the worker is leaving. With
        ``retry`` the rest of the unit runs elsewhere; else (it came from a
        fixture, and would again) the rest is not run."""
        state = self.slots[slot]
        state.leaving = True
        state.flushed = None
        self._unit_over(slot, "crashed")
        if retry and self.remaining[unit] and self.stopped_at is None:
            self.dispatcher.requeue(unit, slot - 1)
        else:
            self.remaining[unit] = []
            self._finish(unit)

    def worker_lost(self, slot: int, ending: WorkerEnding) -> None:
        """Its process ended (or was ended): account for what it was doing,
        and start a replacement on the slot while there is work."""
        state = self.slots[slot]
        if not state.alive:
            return
        state.alive = False
        if self.interrupted:
            return
        if not state.ready:
            if ending.kind is EndKind.FORK_FAILED:
                # Nothing ran; the next worker is a fresh interpreter.
                self._restart_if_needed(slot)
                return
            raise WorkerStartupError(
                f"Worker {slot} {ending.sentence()} before it could run tests. "
                f"Its output:\n\n{ending.log_tail or '(nothing)'}"
            )
        unit = state.unit
        state.flushed = None  # who knows what it had done to its databases
        if unit is not None and not state.leaving:
            self._lost_in_unit(slot, unit, ending)
        elif unit is not None:
            self._unit_over(slot, "crashed")
            self.remaining[unit] = []
            self._finish(unit)
        self._restart_if_needed(slot)

    # -- timers ------------------------------------------------------------

    def overdue(self, now: float) -> list[int]:
        """Slots whose unit has run longer than --group-timeout."""
        if self.group_timeout is None:
            return []
        return [
            slot
            for slot, state in self.slots.items()
            if state.busy and now - state.unit_started > self.group_timeout
        ]

    def silent(self, now: float, limit: float) -> list[int]:
        """Slots whose worker has not said hello within ``limit`` seconds."""
        return [
            slot
            for slot, state in self.slots.items()
            if state.alive and not state.ready and now - state.started_at > limit
        ]

    # -- assignments ---------------------------------------------------------

    def dispatch(self) -> None:
        """Give a unit to every worker that is free and may start one."""
        if self.stopped_at is not None or self.interrupted:
            return
        for slot, state in self.slots.items():
            while (
                state.alive
                and state.ready
                and state.configured
                and not state.leaving
                and state.unit is None
            ):
                unit = self.dispatcher.next_unit(slot - 1)
                if unit is None:
                    break
                self._assign(slot, unit)

    def _assign(self, slot: int, unit: int) -> None:
        state = self.slots[slot]
        present = []
        for index in list(self.remaining[unit]):
            if index in state.index_map:
                present.append(index)
            else:
                self._account(slot, index)
                self._test_error(
                    slot, index, WorkerCrashed(self._why_missing(state, index))
                )
        crashed = self._crashed_in.pop(unit, None)
        if crashed is not None and crashed in state.index_map:
            present.insert(0, crashed)
        in_module = self._crashed_in_class_fixture.pop(unit, None)
        if in_module is not None and in_module in state.index_map:
            present.insert(0, in_module)
        if not present:
            self._finish(unit)
            return
        state.unit = unit
        state.unit_started = self.clock()
        state.progressed = state.failed = False
        state.in_flight = state.fixture = None
        for listener in self.listeners:
            listener.unit_started(slot, unit, self.dispatcher.phase_name)
        self.workers.send(
            slot,
            p.RunUnit(
                unit,
                [state.index_map[i] for i in present],
                flushed=None if state.flushed is None else list(state.flushed),
                fixtures_only=[] if crashed is None else [state.index_map[crashed]],
                module_fixtures_only=(
                    [] if in_module is None else [state.index_map[in_module]]
                ),
            ),
        )

    # -- internals -------------------------------------------------------

    @property
    def _reporting(self) -> bool:
        return self.stopped_at is None and not self.interrupted

    def _report(self) -> RunReport:
        if self.report is None:
            raise RuntimeError("the run has no result to report to yet")
        return self.report

    def _check_stop(self) -> None:
        if self.report is not None and self.report.should_stop:
            self.stop()

    def _start(self, slot: int) -> None:
        state = self.slots[slot]
        state.generation += 1
        state.alive = True
        state.started_at = self.clock()
        state.ready = state.configured = state.leaving = False
        state.index_map, state.reverse_map, state.import_errors = {}, {}, {}
        state.unit = state.in_flight = state.fixture = None
        for listener in self.listeners:
            listener.worker_starting(slot)
        self.workers.start(slot, state.generation)
        self._send_configure(slot)

    def _restart_if_needed(self, slot: int) -> None:
        if self._reporting and not self.dispatcher.done:
            self._start(slot)

    def _send_configure(self, slot: int) -> None:
        state = self.slots[slot]
        config = self.configs.get(slot)
        if (
            config is not None
            and state.alive
            and state.databases_ready
            and not state.configured
        ):
            state.configured = True
            self.workers.send(slot, config)

    def _account(self, slot: int, index: int) -> None:
        """``index`` is reported (or will never be): no longer remaining."""
        unit = self.slots[slot].unit
        first = [self.remaining[unit]] if unit is not None else []
        for indices in [*first, *self.remaining.values()]:
            if index in indices:
                indices.remove(index)
                return

    def _finish(self, unit: int) -> None:
        self.dispatcher.finished(unit)
        for listener in self.listeners:
            listener.unit_finished(unit)

    def _unit_over(self, slot: int, outcome: str) -> None:
        state = self.slots[slot]
        unit, state.unit = state.unit, None
        state.in_flight = state.fixture = None
        if unit is not None:
            for listener in self.listeners:
                listener.unit_ended(slot, unit, outcome)

    def _lost_in_unit(self, slot: int, unit: int, ending: WorkerEnding) -> None:
        state = self.slots[slot]
        label = self.units[unit].label
        if state.in_flight is not None:
            index = state.in_flight
            self._account(slot, index)
            self._crashed_in[unit] = index
            self._test_error(
                slot,
                index,
                WorkerCrashed(
                    f"The worker running {self.tests[index].id} {ending.report()}"
                ),
            )
        elif state.fixture is not None:
            fixture = state.fixture
            self._fixture_error(
                fixture.description,
                WorkerCrashed(
                    f"The worker running {fixture.description} {ending.report()}"
                ),
                once=True,
            )
            if fixture.sets_up:
                self._drop_covered_by(unit, fixture.target)
            if fixture.method in ("setUpClass", "tearDownClass"):
                member = next(
                    (
                        i
                        for i in self.units[unit].indices
                        if self.tests[i].class_label == fixture.target
                    ),
                    None,
                )
                if member is not None:
                    self._crashed_in_class_fixture[unit] = member
        else:
            # Between tests, in the worker's own code: still never a pass.
            self._fixture_error(
                label,
                WorkerCrashed(
                    f"The worker running {label} {ending.report()} It was "
                    f"between two tests; the rest of the unit runs in a new worker."
                ),
            )
            if not state.progressed:
                self._losses[unit] = self._losses.get(unit, 0) + 1
        self._unit_over(slot, "crashed")
        remaining = self.remaining[unit]
        if remaining and self._losses.get(unit, 0) >= GIVE_UP_AFTER:
            self._fixture_error(
                label,
                WorkerCrashed(
                    f"{len(remaining)} test(s) of {label} not run: "
                    f"{GIVE_UP_AFTER} workers ended before starting any of them."
                ),
            )
            remaining.clear()
        fixtures_due = (
            unit in self._crashed_in or unit in self._crashed_in_class_fixture
        )
        if (remaining or fixtures_due) and self._reporting:
            self.dispatcher.requeue(unit, slot - 1)
        else:
            remaining.clear()
            self._crashed_in.pop(unit, None)
            self._crashed_in_class_fixture.pop(unit, None)
            self._finish(unit)

    def _drop_covered_by(self, unit: int, target: str) -> None:
        """The tests a failed setUpClass or setUpModule of ``target`` (a
        class or a module) would have covered are not run, as in unittest."""
        for index in list(self.remaining[unit]):
            test = self.tests[index]
            if target in (test.class_label, test.module):
                self.remaining[unit].remove(index)

    def _seen_before(self, description: str, kind: type) -> bool:
        """Whether this fixture's outcome of this kind was reported already."""
        key = (description, kind)
        if key in self._fixtures_reported:
            return True
        self._fixtures_reported.add(key)
        return False

    def _test_error(self, slot: int, index: int, error: Exception) -> None:
        if self.report is not None:
            with self._writing():
                self.report.test_error(index, error)
                for listener in self.listeners:
                    listener.test_errored(slot, index)

    def _fixture_error(
        self, description: str, error: Exception, *, once: bool = False
    ) -> None:
        """``once``: a fixture's error, reported once (see fixture_outcome)."""
        if self.report is None:
            return
        if once and self._seen_before(description, type(error)):
            return
        with self._writing():
            self.report.fixture_error(description, error)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        for listener in self.listeners:
            listener.reporting(True)
        try:
            yield
        finally:
            for listener in self.listeners:
                listener.reporting(False)

    def tick(self, now: float) -> None:
        for listener in self.listeners:
            listener.tick(now)

    def run_ended(self) -> None:
        for listener in self.listeners:
            listener.run_ended()

    def _why_missing(self, state: SlotState, index: int) -> str:
        test_id = self.tests[index].id
        for module, error in state.import_errors.items():
            if test_id.startswith(module + "."):
                return (
                    f"The worker could not run {test_id}: its module failed to "
                    f"import there.\n\n{error}"
                )
        return (
            f"The worker could not find {test_id}: its suite does not have it "
            f"(does its module load differently in a child process?)."
        )
