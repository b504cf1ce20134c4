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

from ..databases import clones
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
            # Asked here, in the main thread: the clones' threads cannot.
            clones.clear_old_clones(
                old_config,
                cloned,
                interactive=self.options.interactive,
                verbosity=self.options.verbosity,
            )
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
                self.suite.slot_ready,
                cloned,
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
        """Stop the workers, then drop every clone and the test databases
        (each drop tried even if one fails; the first failure is raised)."""
        self.close()
        try:
            self.finish_cloning()
        finally:
            problems = clones.destroy_clones(
                old_config, self.clone_slots(), self.options.verbosity
            )
            try:
                clones.destroy_test_databases(
                    old_config, self.options.verbosity, self.options.keepdb
                )
            finally:
                for problem in problems:
                    print(f"Could not destroy {problem}", file=sys.stderr)

    # -- 4. the end ----------------------------------------------------------

    def close(self) -> None:
        """End every worker and the fork server; safe to call more than once."""
        self.suite.shutdown()
        if self._forks is not None:
            self._forks.close()
            self._forks = None


def serialized_aliases_needed(tests: Iterable[Any]) -> set[str]:
    """The databases on which a ``TestCase`` may run after a
    ``TransactionTestCase`` flushed it, in some worker: their contents after
    the migrations are serialized, for the worker to put back
    (``unit_suite.FlushedDatabases``)."""
    from django.test import TestCase, TransactionTestCase

    by_kind: dict[bool, set[str]] = {True: set(), False: set()}
    seen: set[type] = set()
    for test in tests:
        cls = type(test)
        if cls in seen or not issubclass(cls, TransactionTestCase):
            continue
        seen.add(cls)
        aliases = cls._databases_names(include_mirrors=False)  # type: ignore[attr-defined]
        by_kind[issubclass(cls, TestCase)].update(aliases)
    return by_kind[True] & by_kind[False]
