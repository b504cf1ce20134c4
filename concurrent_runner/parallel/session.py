"""One parallel run, owned from its workers' start to its clones' drop.

``ParallelSession`` is what ``Runner`` chooses when a run is parallel, as
Django's ``DiscoverRunner`` chooses its ``ParallelTestSuite``: it owns the
fork server, the worker processes (``WorkerPool``), the run controller,
the cloning of the test databases for the worker slots, and their teardown.
``Runner`` calls it from DiscoverRunner's hooks, in this order:

1. ``setup_databases``: start the workers (they start while the databases
   are made), make the test databases (Django's own ``setup_databases``,
   migrations once), run the system checks, start cloning for the slots in
   the background, and tell each slot what its databases are;
2. ``suite.run(result)``: the loop (``loop.GroupedParallelSuite``);
3. ``teardown_databases``: stop the workers, record durations, drop clones
   and test databases;
4. ``close``: end whatever is left (also after an error or an interrupt).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections

from ..databases import clones, kept
from ..planning.groups import Unit, class_label
from ..planning.plan import Plan
from . import protocol as p
from .controller import RunController, RunListener, TestInfo
from .interrupts import Interrupts
from .loop import GroupedParallelSuite, WorkerPool
from .workers import WorkerProcess


@dataclass(frozen=True)
class SessionOptions:
    """What the session needs of the runner's flags."""

    run: int  # which run_tests() call of the process this is
    rundir: Path
    verbosity: int = 1
    interactive: bool = True
    failfast: bool = False
    keepdb: bool = False
    debug_sql: bool = False
    shuffle_seed: int | None = None
    group_timeout: float | None = None
    buffer: bool = False


class ParallelSession:
    def __init__(
        self,
        tests: Sequence[Any],
        units: Sequence[Unit],
        plan: Plan,
        estimates: Sequence[float],
        options: SessionOptions,
        *,
        listeners: Sequence[RunListener] = (),
        listeners_for: Callable[[Any], list[RunListener]] = lambda result: [],
        interrupts: Interrupts | None = None,
    ) -> None:
        self.tests = list(tests)
        self.units = list(units)
        self.plan = plan
        self.options = options
        self._forks: Any = None  # forking.ForkServer, while workers may start
        self.pool = WorkerPool(self._spawn)
        infos = [
            TestInfo(test.id(), class_label(test), type(test).__module__)
            for test in self.tests
        ]
        self.controller = RunController(
            infos,
            self.units,
            plan,
            estimates,
            workers=self.pool,
            listeners=listeners,
            group_timeout=options.group_timeout,
        )
        self.suite = GroupedParallelSuite(
            self.tests,
            self.controller,
            self.pool,
            interrupts=interrupts,
            listeners_for=listeners_for,
        )
        self.cloning: clones.Cloning | None = None
        #: --keepdb: which kept clones this run uses and makes (``kept``).
        self.kept: kept.KeptClones | None = None
        #: Slots whose every clone exists (kept, or made by this run).
        self._slots_made: set[int] = set()
        #: Slots without a clone this run whose kept clone is dropped at the end.
        self._drop_also: list[int] = []
        #: Seconds from the first clone's start to the last clone made.
        self.cloning_took: float | None = None

    @property
    def workers(self) -> int:
        return self.plan.workers

    @property
    def interrupted(self) -> str | None:
        return self.controller.interrupted

    def _spawn(self, slot: int, generation: int) -> WorkerProcess:
        return WorkerProcess(
            slot,
            run=self.options.run,
            shuffle_seed=self.options.shuffle_seed,
            rundir=self.options.rundir,
            generation=generation,
            forks=self._forks,
        )

    # -- 1. databases and workers ------------------------------------------------

    def setup_databases(
        self,
        make_databases: Callable[[], list[Any]],
        run_checks: Callable[[], None],
        *,
        on_cloning: Callable[[clones.Cloning], None] | None = None,
        cleanup_guard: Callable[[], AbstractContextManager[Any]] = (
            contextlib.nullcontext
        ),
    ) -> list[Any]:
        """Start the workers, make the test databases (``make_databases``,
        which returns Django's ``old_config``), check, and clone for the
        slots in the background; returns ``old_config``."""
        from .forking import ForkServer, fork_refusal

        refusal = fork_refusal()
        if refusal is None:
            # Now, while this process has the suite and no database yet. If
            # the system will not fork, workers are fresh interpreters.
            try:
                self._forks = ForkServer(
                    self.tests,
                    failfast=self.options.failfast,
                    buffer=self.options.buffer,
                )
            except OSError as error:
                refusal = f"the fork server could not start ({error})"
        if self.options.verbosity >= 2:
            print(
                "Workers are forked from the test process."
                if refusal is None
                else f"Workers are fresh interpreters: {refusal}."
            )
        self.controller.start()  # they start while the databases are made
        old_config = None
        cloning_started = False
        try:
            old_config = make_databases()
            # Django runs its checks after this; they run now, before the
            # clones, because PostgreSQL copies no template that a
            # connection is using, and the clones are made from here on, in
            # the background, while the first workers test.
            run_checks()
            # Their report (stdout) before the clones' lines (stderr), also
            # where stdout is a block-buffered pipe (a CI log).
            sys.stdout.flush()
            cloned = self.clone_slots()
            aliases = clones.primaries(old_config)
            reused: list[int] = []
            if self.options.keepdb:
                self.kept = kept.decide(
                    aliases,
                    cloned,
                    self.options.rundir,
                    restorable_aliases(self.tests),
                )
                reused = sorted(self.kept.reused)
                self._announce_kept(old_config)
            else:
                # Clones kept by earlier --keepdb runs: made again, or (the
                # last slot's, which works on the test databases) dropped.
                every = list(range(1, self.workers + 1))
                ours = kept.ours_among(aliases, every, self.options.rundir)
                self.kept = kept.KeptClones({}, {}, {}, ours)
                self._drop_also = [
                    slot
                    for slot in every
                    if slot not in cloned
                    and any(kept.clone_name(alias, slot) in ours for alias in aliases)
                ]
            to_clone = [slot for slot in cloned if slot not in reused]
            # Asked here, in the main thread: the clones' threads cannot.
            clones.clear_old_clones(
                old_config,
                to_clone,
                interactive=self.options.interactive,
                verbosity=self.options.verbosity,
                ours=self.kept.ours if self.kept else (),
            )
            self._mark(old_config, reused, "in-use")  # before any worker uses them
            self._mark(old_config, to_clone, "making")  # before they are dropped
            for slot in reused:
                # What a TransactionTestCase left flushed is put back before
                # a TestCase runs there (unit_suite.FlushedDatabases).
                self.controller.slots[slot].flushed = list(self.kept.reused[slot])
            self.controller.configure(
                {
                    slot: self._configuration(old_config, slot, slot in cloned)
                    for slot in range(1, self.workers + 1)
                }
            )
            cloning_started = True
            self.cloning = clones.Cloning(
                old_config,
                self.workers,
                self.options.verbosity,
                self._slot_made,
                to_clone,
                kept=reused,
                after_clone=self._clone_made if self.options.keepdb else None,
            )
            self.suite.cloning = self.cloning
            if on_cloning is not None:
                on_cloning(self.cloning)
        except BaseException:
            # No worker or clone left behind (the rest is dropped by the
            # runner's caller); ``cleanup_guard`` lets a first Ctrl-C wait.
            with cleanup_guard():
                self.close()
                self.finish_cloning()
                # Only clones this run started to make: a database already
                # named like one, which the user chose to keep, stays.
                if old_config is not None and cloning_started:
                    clones.destroy_clones(old_config, self.clone_slots(), 0, attempts=1)
            raise
        return old_config

    def clone_slots(self) -> list[int]:
        return clones.clone_slots(self.workers, self.options.keepdb)

    def _slot_made(self, slot: int) -> None:
        self._slots_made.add(slot)
        self.suite.slot_ready(slot)

    def _kept_aliases(self, old_config: list[Any]) -> list[str]:
        """The aliases whose clones this run keeps (``--keepdb``, where the
        backend can)."""
        if self.kept is None or not self.kept.fingerprints:
            return []
        return clones.primaries(old_config)

    def _mark(self, old_config: list[Any], slots: Sequence[int], state: str) -> None:
        """Set the record of each of our kept clones of ``slots`` to
        ``state`` (a clone made from scratch gets one once it is complete)."""
        if self.kept is None or not self.kept.ours:
            return
        for alias in clones.primaries(old_config):
            kept.write_records(
                alias,
                {
                    slot: kept.Record(state)
                    for slot in slots
                    if kept.clone_name(alias, slot) in self.kept.ours
                },
            )

    def _clone_made(self, alias: str, slot: int) -> None:
        """In a clone's thread: the clone is complete, and about to be used."""
        if self.kept is not None and alias in self.kept.fingerprints:
            kept.write_records(alias, {slot: kept.Record("in-use")})

    def _announce_kept(self, old_config: list[Any]) -> None:
        """Django's "Using existing clone" for each clone used again, and at
        -v 2 why a kept one is made again."""
        assert self.kept is not None
        verbosity = self.options.verbosity
        for alias in self._kept_aliases(old_config):
            creation = connections[alias].creation
            for slot in sorted(self.kept.reused):
                if verbosity >= 1:
                    shown = creation._get_database_display_str(  # type: ignore[attr-defined]
                        verbosity, kept.clone_name(alias, slot)
                    )
                    creation.log(f"Using existing clone for alias {shown}...")
            for slot, why in sorted(self.kept.remade.items()):
                name = kept.clone_name(alias, slot)
                if verbosity >= 2 and name in self.kept.ours:
                    shown = creation._get_database_display_str(verbosity, name)  # type: ignore[attr-defined]
                    creation.log(f"Making clone for alias {shown} again: {why}.")

    def _configuration(
        self, old_config: list[Any], slot: int, cloned: bool
    ) -> p.Configure:
        from ..databases.postgresql import fast_postgresql_enabled
        from ..databases.sqlite import fast_sqlite_enabled

        serialized = {
            alias: contents
            for alias in connections
            if (
                contents := getattr(
                    connections[alias], "_test_serialized_contents", None
                )
            )
        }
        return p.Configure(
            clones.slot_settings(old_config, slot, cloned=cloned),
            serialized,
            self.options.debug_sql,
            sqlite_dir=str(self.options.rundir),
            fast_sqlite=fast_sqlite_enabled(),
            fast_postgresql=fast_postgresql_enabled(),
        )

    def finish_cloning(self) -> None:
        """Wait for the clones still being made (their errors were raised in
        the run already); their time is ``cloning_took``."""
        cloning, self.cloning = self.cloning, None
        if cloning is not None:
            with contextlib.suppress(Exception, SystemExit):
                cloning.wait()
            self.cloning_took = cloning.took

    # -- 3. teardown ---------------------------------------------------------

    def teardown_databases(self, old_config: list[Any]) -> None:
        """Stop the workers, then drop every clone (but those kept for the
        next run, under ``--keepdb``) and the test databases (each drop tried
        even if one fails; the first failure is raised)."""
        keeping = self._kept_slots()
        self.close()
        try:
            self.finish_cloning()
            self._keep(old_config, keeping)
        finally:
            problems = clones.destroy_clones(
                old_config,
                [
                    slot
                    for slot in [*self.clone_slots(), *self._drop_also]
                    if slot not in keeping
                ],
                self.options.verbosity,
            )
            try:
                clones.destroy_test_databases(
                    old_config, self.options.verbosity, self.options.keepdb
                )
            finally:
                for problem in problems:
                    print(f"Could not destroy {problem}", file=sys.stderr)

    def _kept_slots(self) -> dict[int, set[str]]:
        """The slots whose clones are kept for the next run, with the aliases
        a TransactionTestCase may have left flushed: every slot whose clones
        were all made, unless the run was interrupted or a worker is still
        busy (what it did to its databases is unknown)."""
        if self.kept is None or not self.kept.fingerprints:
            return {}
        if self.controller.interrupted:
            return {}
        slots = {}
        for slot in self.clone_slots():
            state = self.controller.slots.get(slot)
            if state is None or state.busy or slot not in self._slots_made:
                continue
            aliases = set(self.kept.fingerprints)
            slots[slot] = aliases if state.flushed is None else set(state.flushed)
        return slots

    def _keep(self, old_config: list[Any], keeping: dict[int, set[str]]) -> None:
        """Record, for the next run, that the clones of ``keeping`` match the
        test databases (see ``kept``)."""
        if self.kept is None:
            return
        for alias in self._kept_aliases(old_config):
            fingerprint, data = self.kept.fingerprints[alias]
            kept.write_records(
                alias,
                {
                    slot: kept.Record("ready", fingerprint, data, alias in flushed)
                    for slot, flushed in keeping.items()
                },
            )

    # -- 4. the end ----------------------------------------------------------

    def close(self) -> None:
        """End every worker and the fork server; safe to call more than once."""
        self.suite.shutdown()
        if self._forks is not None:
            self._forks.close()
            self._forks = None


def restorable_aliases(tests: Iterable[Any]) -> set[str]:
    """The databases whose kept clones may be used although a
    TransactionTestCase left them flushed: those whose contents this run
    serialized (to put back before a ``TestCase``), and those no
    ``TestCase`` of this run uses."""
    needed = _aliases_by_kind(tests)[True]
    serialized = {
        alias
        for alias in connections
        if getattr(connections[alias], "_test_serialized_contents", None)
    }
    return serialized | (set(connections) - needed)


def serialized_aliases_needed(tests: Iterable[Any]) -> set[str]:
    """The databases on which a ``TestCase`` may run after a
    ``TransactionTestCase`` flushed it, in some worker: their contents after
    the migrations are serialized, for the worker to put back
    (``unit_suite.FlushedDatabases``)."""
    by_kind = _aliases_by_kind(tests)
    return by_kind[True] & by_kind[False]


def _aliases_by_kind(tests: Iterable[Any]) -> dict[bool, set[str]]:
    """The databases the tests' ``TestCase`` classes use (``True``) and
    their other ``TransactionTestCase`` classes use (``False``)."""
    from django.test import TestCase, TransactionTestCase

    by_kind: dict[bool, set[str]] = {True: set(), False: set()}
    for cls in {type(test) for test in tests}:
        if issubclass(cls, TransactionTestCase):
            aliases = cls._databases_names(include_mirrors=False)  # type: ignore[attr-defined]
            by_kind[issubclass(cls, TestCase)].update(aliases)
    return by_kind
