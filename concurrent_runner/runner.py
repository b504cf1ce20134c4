"""``concurrent_runner.Runner``: Django's DiscoverRunner, run in parallel groups.

``manage.py test --parallel-groups N`` discovers and filters tests exactly as
Django does, splits them into units by ``mp_group``, plans them, creates the
test databases once and a clone for every worker slot but the last (which
uses them), and runs the units in child ``manage.py test`` processes.
Without the flag (or with 1) it is DiscoverRunner, except that an in-memory
SQLite test database becomes a file that other processes can open, and that
the test databases are tuned for being thrown away
(``databases.tune_sqlite``, ``databases.tune_postgresql``, ``flush``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import shutil
import sys
import unittest
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from django.test.runner import DiscoverRunner
from django.test.utils import (
    setup_databases as _setup_databases,
)
from django.test.utils import (
    setup_test_environment,
    teardown_test_environment,
)

from .environment import SERVER_ENV, WORKER_ENV
from .errors import ConfigurationError
from .planning.groups import build_units, class_label
from .planning.sharding import Shard, resolve_shard, shard_argument
from .reports.writing import check_report_path, report_path_argument

if TYPE_CHECKING:  # the worker side is imported only where it is used
    from .parallel.worker import WorkerSpec


def parallel_groups_type(value: str) -> int:
    """``--parallel-groups`` takes a positive integer or ``auto``."""
    if value == "auto":
        return default_workers()
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a positive integer or the string 'auto'"
        ) from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer")
    return number


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a positive number of seconds"
        )
    return seconds


def default_workers() -> int:
    """Like Django's --parallel auto: DJANGO_TEST_PROCESSES, else the CPUs."""
    with contextlib.suppress(KeyError, ValueError):
        return max(1, int(os.environ["DJANGO_TEST_PROCESSES"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Runner(DiscoverRunner):
    """A drop-in DiscoverRunner that runs test classes in parallel groups."""

    #: How many times run_tests() has been called in this process, so that a
    #: worker re-running a script that calls the runner twice serves the
    #: right call.
    _calls: ClassVar[Iterator[int]] = itertools.count(1)

    def __init__(
        self,
        *,
        parallel_groups: int | str = 1,
        group_timeout: float | None = None,
        timeline: str | None = None,
        shard: Shard | tuple[int, int] | str | None = None,
        list_groups: bool = False,
        junit_xml: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_report_path("--timeline", timeline)
        check_report_path("--junit-xml", junit_xml)
        self.group_timeout = group_timeout
        self.timeline_path = Path(timeline) if timeline else None
        self.junit_path = Path(junit_xml) if junit_xml else None
        self.junit: Any = None
        self.shard = resolve_shard(shard)  # "auto": the CI variables, now
        self.list_groups = list_groups
        self._listing: Any = None
        self.timeline: Any = None
        if isinstance(parallel_groups, str):
            parallel_groups = parallel_groups_type(parallel_groups)
        self.parallel_groups = parallel_groups
        if parallel_groups > 1 and self.pdb:
            raise ConfigurationError(
                "You cannot use --pdb with --parallel-groups; pass "
                "--parallel-groups=1 to use it."
            )
        if parallel_groups > 1 and self.parallel not in (0, 1):
            raise ConfigurationError(
                f"--parallel={self.parallel!r} and --parallel-groups="
                f"{parallel_groups} are two ways to run in parallel; drop "
                f"--parallel and keep --parallel-groups."
            )
        self._suite: Any = None
        self._forks: Any = None  # the fork server, while workers may start
        self._recorded: dict[str, float] | None = None
        self._kept_open: list[Any] = []  # see databases.keep_open_like_memory
        self._rundir: Path | None = None
        self._call = 0
        self._checked = False  # run_checks already ran (before cloning)
        self._cloning: Any = None  # databases.Cloning, while clones are made
        self._pg_tuning: int | None = None  # see databases.tune_postgresql
        self._interrupts: Any = None  # interrupts.Interrupts, while running
        self._cloning_bar: Any = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--parallel-groups",
            type=parallel_groups_type,
            default=1,
            metavar="N",
            help=(
                "Run test classes in up to N worker processes, grouped and "
                'isolated by their mp_group attribute. Use the value "auto" '
                "for one worker per processor core."
            ),
        )
        parser.add_argument(
            "--group-timeout",
            type=positive_seconds,
            default=None,
            metavar="SECONDS",
            help=(
                "With --parallel-groups, end a unit (a class or a serial group) "
                "that runs longer than SECONDS, report where it was stuck, and "
                "go on with the rest."
            ),
        )
        parser.add_argument(
            "--shard",
            type=shard_argument,
            default=None,
            metavar="K/N",
            help=(
                "Run shard K of N: a deterministic part of the suite, groups "
                "kept whole, balanced by recorded durations. 'auto' takes K "
                "and N from CI_NODE_INDEX and CI_NODE_TOTAL."
            ),
        )
        parser.add_argument(
            "--junit-xml",
            type=report_path_argument("--junit-xml"),
            metavar="PATH",
            default=None,
            help="Write a JUnit XML report of the run to PATH.",
        )
        parser.add_argument(
            "--list-groups",
            action="store_true",
            help="Print the plan (phases, groups, units, estimates, workers) and exit.",
        )
        parser.add_argument(
            "--timeline",
            type=report_path_argument("--timeline"),
            metavar="PATH",
            default=None,
            help=(
                "Write a timeline of the run: a self-contained HTML page "
                "(a Gantt chart of the workers), or its data as JSON if PATH "
                "ends in .json."
            ),
        )

    # -- entry point -------------------------------------------------------

    def run_tests(self, test_labels: list[str], **kwargs: Any) -> int:
        self._call = next(self._calls)
        from .exiting import skip_final_collection

        skip_final_collection()
        self._recorded = None
        self._checked = False
        if os.environ.get(SERVER_ENV):
            # Started to serve concurrent calls for a project configured by
            # settings.configure() (see calls.server_command), not to test.
            from django.core.management import call_command

            call_command("concurrent_call_wrapper", "--serve")
            raise SystemExit(0)  # the rest of the script is not ours to run
        if os.environ.get(WORKER_ENV):  # the worker side, imported only here
            from .parallel.worker import WorkerSpec

            spec = WorkerSpec.from_environ()
            if spec is not None:
                return self._serve(spec, test_labels)
        if self.list_groups:
            return self._list_groups(test_labels)
        from .rundirs import make_run_dir

        rundir = make_run_dir()  # and remove those of runs killed earlier
        self._rundir = rundir
        # -v 2 ends a parallel run with its timings; an in-process run stays
        # exactly DiscoverRunner's unless a timeline is asked for.
        if self.timeline_path is not None or (
            self.verbosity >= 2 and self.parallel_groups > 1
        ):
            from .reports.timeline import Timeline

            self.timeline = Timeline()
        if self.junit_path is not None:
            from .reports.junit import JUnitReport

            self.junit = JUnitReport()
        from .parallel.interrupts import Interrupts

        self._interrupts = Interrupts()
        unwritten = 0
        try:
            from .databases.flush import fast_flush
            from .databases.sqlite import file_backed_sqlite, tuned_sqlite

            with (
                self._interrupts.handled(),
                file_backed_sqlite(rundir),
                tuned_sqlite(rundir),
                fast_flush(),
                _shared_sync_dir(rundir / "sync"),
            ):
                failures = super().run_tests(test_labels, **kwargs)
        finally:
            try:
                self._untune_postgresql()
                self._stop_workers()
                unwritten = self._write_reports()
            finally:
                self._suite = None
                self._interrupts = None
                shutil.rmtree(rundir, ignore_errors=True)
                self._rundir = None
        # A report that could not be written fails the run.
        return failures + unwritten

    def _write_reports(self) -> int:
        from .reports.writing import write_reports

        reports = [
            ("timeline", self.timeline, self.timeline_path),
            ("JUnit XML report", self.junit, self.junit_path),
        ]
        self.timeline = self.junit = None
        return write_reports(reports, self.log)

    def get_resultclass(self) -> Any:
        base = super().get_resultclass()
        mixins: list[type] = []
        if self.timeline is not None and self._suite is None:
            # In-process: a timeline bar per test class as the result sees it.
            from .reports.timeline import RecordingResult

            mixins.append(RecordingResult)
        if self.junit is not None:
            from .reports.junit import JUnitRecording

            mixins.append(JUnitRecording)
        from .reports.skips import SKIPS_UNSTARTED, NamedSkips

        if SKIPS_UNSTARTED and self.verbosity >= 2:
            mixins.append(NamedSkips)
        if not mixins:
            return base
        return type(
            "ReportingResult",
            (*mixins, base or unittest.TextTestResult),
            {"timeline": self.timeline, "junit": self.junit},
        )

    def _serve(self, spec: WorkerSpec, test_labels: list[str]) -> int:
        """Run as a worker for the parent's parallel run_tests() call."""
        if spec.run != self._call:
            # Another call of a script that runs the runner more than once;
            # the parent runs (or ran) it itself.
            return 0
        from .parallel.worker import serve

        if spec.shuffle_seed is not None:
            self.shuffle = spec.shuffle_seed
        from .parallel.worker import dump_stacks_on_sigusr1

        dump_stacks_on_sigusr1(spec.stack_file)
        from .databases.flush import install, wanted

        if wanted():
            install()  # a forked worker has it already
        setup_test_environment(debug=self.debug_mode)
        try:
            suite = DiscoverRunner.build_suite(self, test_labels)
            tests = list(_iter_tests(suite))
            from .parallel.protocol import connect_child

            serve(connect_child(spec.fd), tests, failfast=self.failfast)
        finally:
            teardown_test_environment()
        return 0

    # -- suite -------------------------------------------------------------

    def build_suite(self, test_labels: Any = None, **kwargs: Any) -> Any:
        with self._ctrl_c_raises():  # discovery imports every test module
            suite = super().build_suite(test_labels, **kwargs)
        tests = list(_iter_tests(suite))
        # Checked in every mode, so a bad mp_group fails before any test runs
        # whether or not this run is parallel.
        units = build_units(tests)
        if self.shard is not None:
            tests, units = self._shard(tests, units, self.shard)
            suite = self.test_suite(tests)
        if self.list_groups:
            self._listing = (len(tests), units, self._plan(tests, units))
            return suite
        if self.parallel_groups <= 1 or self._rundir is None:
            return suite

        from .parallel.loop import GroupedParallelSuite
        from .parallel.workers import WorkerProcess

        plan = self._plan(tests, units)
        if plan.workers <= 1:
            return suite
        rundir = self._rundir
        seed = self.shuffle_seed
        call = self._call

        def spawn(slot: int, generation: int) -> WorkerProcess:
            return WorkerProcess(
                slot,
                run=call,
                shuffle_seed=seed,
                rundir=rundir,
                generation=generation,
                forks=self._forks,
            )

        self.log(
            f"Running {len(units)} unit(s) in {len(plan.phases)} phase(s) on "
            f"{plan.workers} worker processes."
        )
        from .planning.plan import describe_plan

        for line in describe_plan(plan, units, tests=False):
            self.log(line, level=logging.DEBUG)
        if self.timeline is not None:
            self.timeline.workers = plan.workers
        self._suite = GroupedParallelSuite(
            tests,
            units,
            plan,
            spawn=spawn,
            group_timeout=self.group_timeout,
            timeline=self.timeline,
            verbosity=self.verbosity,
        )
        return self._suite

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        # Within Django's try/finally that tears the databases down.
        self._check_interrupts()
        # What setup wrote to stdout (migrate's "Applying ... OK") must not
        # surface in the middle of the results when both go to one log.
        sys.stdout.flush()
        result = super().run_suite(suite, **kwargs)
        if self.verbosity >= 2 and self.timeline is not None and self._suite:
            from .reports.timeline import summarise, timings_lines

            for line in timings_lines(summarise(self.timeline)):
                self.log(line)
        return result

    def _history(self) -> dict[str, float]:
        """Durations of earlier runs, read once per run."""
        if self._recorded is None:
            from .planning import durations

            self._recorded = durations.load(durations.durations_path())
        return self._recorded

    def _estimates(self, tests: list[Any], units: list[Any]) -> list[float]:
        from .planning import durations

        tests_per_class = Counter(class_label(t) for t in tests)
        return durations.estimate(units, tests_per_class, self._history())

    def _plan(self, tests: list[Any], units: list[Any]) -> Any:
        from .planning.plan import make_plan

        return make_plan(units, self._estimates(tests, units), self.parallel_groups)

    def _shard(
        self, tests: list[Any], units: list[Any], shard: Shard
    ) -> tuple[list[Any], list[Any]]:
        from .planning import durations
        from .planning.sharding import select

        ids = [test.id() for test in tests]
        picked = select(shard, units, self._estimates(tests, units), ids)
        recorded = len({class_label(t) for t in tests} & set(self._history()))
        self.log(picked.summary(recorded, durations.durations_path()))
        kept = [tests[i] for i in picked.tests]
        return kept, build_units(kept)

    def _list_groups(self, test_labels: list[str]) -> int:
        """--list-groups: print the plan, run nothing."""
        self.build_suite(test_labels)
        count, units, plan = self._listing
        recorded = bool(self._history())
        unit = "s" if recorded else " (in tests: no durations recorded yet)"
        print(
            f"{count} test(s) in {len(units)} unit(s), {len(plan.phases)} "
            f"phase(s), {plan.workers} worker(s). Estimated wall time "
            f"{plan.estimate:.2f}{unit}."
        )
        from .planning.plan import describe_plan

        for line in describe_plan(plan, units, tests=True):
            print(line)
        return 0

    # -- databases ---------------------------------------------------------

    def setup_databases(self, **kwargs: Any) -> Any:
        from django.db import connections

        from .databases import interrupted_setup, postgresql

        aliases = kwargs.get("aliases")
        # Only what this run creates: an empty set (no test uses a database)
        # is nothing, so an interrupt drops nothing it did not make.
        used = connections if aliases is None else aliases
        if postgresql.fast_postgresql_enabled() and self._pg_tuning is None:
            # Before the migrations, and before the fork server: its workers
            # inherit it for their clones.
            self._pg_tuning = postgresql.tune_postgresql(
                postgresql.postgresql_test_names(used)
            )
        planned = interrupted_setup.planned_test_databases(used)
        with interrupted_setup.noting_made(used) as made:
            try:
                if self._suite is None:
                    return self._setup_in_process(**kwargs)
                return self._setup_for_workers(self._suite, used, **kwargs)
            except BaseException:
                # Interrupted, cancelled or failed half way: drop the test
                # databases this run made, and no other (one that existed
                # and that the user chose to keep at Django's prompt).
                with self._cleanup_goes_on():
                    interrupted_setup.drop_planned(
                        planned, made=made, keepdb=self.keepdb
                    )
                raise

    def _ctrl_c_raises(self) -> Any:
        """A first Ctrl-C stops discovery, setup and checks (the cleanup
        after a failed setup finishes first: ``_cleanup_goes_on``)."""
        if self._interrupts is None:
            return contextlib.nullcontext()
        return self._interrupts.ctrl_c_raises()

    def _setup_in_process(self, **kwargs: Any) -> Any:
        with self._ctrl_c_raises(), self._timed_bar("creating the test databases"):
            created = super().setup_databases(**kwargs)
        self._check_interrupts()
        # Not under Django's own --parallel: its forked workers must
        # really close the connection they inherit to reach their clone.
        if self._rundir is not None and self.parallel <= 1:
            from .databases.sqlite import keep_open_like_memory

            self._kept_open = keep_open_like_memory(self._rundir)
        return created

    def _setup_for_workers(self, suite: Any, used: Any, **kwargs: Any) -> Any:
        from django.db import connections

        from .databases import clones, postgresql, sqlite
        from .parallel.forking import ForkServer, fork_workers_enabled
        from .parallel.protocol import Configure

        if fork_workers_enabled():
            # Now, while this process has the suite and no database yet. If
            # the system will not fork, workers are fresh interpreters.
            with contextlib.suppress(OSError):
                self._forks = ForkServer(suite.tests, failfast=self.failfast)
        # Workers start while the databases are being built.
        suite.start_workers()
        old_config = None
        cloning_started = False
        try:
            with self._ctrl_c_raises():
                with self._timed_bar("creating the test databases"):
                    old_config = _setup_databases(
                        self.verbosity,
                        self.interactive,
                        time_keeper=self.time_keeper,
                        keepdb=self.keepdb,
                        debug_sql=self.debug_sql,
                        parallel=0,
                        **kwargs,
                    )
                self._check_interrupts()  # before any clone is made
                # Django runs its checks after this method; they run now,
                # before the clones, because PostgreSQL copies no template
                # that a connection is using, and the clones are made from
                # here on, in the background, while the first workers test.
                self.run_checks(set(used))
                self._checked = True
                # Their report (stdout) before the clones' lines (stderr),
                # also where stdout is a block-buffered pipe (a CI log).
                sys.stdout.flush()
                cloned = self._clone_slots(suite)
                # Asked here, in the main thread: the clones' threads cannot.
                clones.clear_old_clones(
                    old_config,
                    cloned,
                    interactive=self.interactive,
                    verbosity=self.verbosity,
                )
                serialized = {
                    alias: contents
                    for alias in connections
                    if (
                        contents := getattr(
                            connections[alias], "_test_serialized_contents", None
                        )
                    )
                }
                suite.configure(
                    {
                        slot: Configure(
                            clones.slot_settings(
                                old_config, slot, cloned=slot in cloned
                            ),
                            serialized,
                            self.debug_sql,
                            sqlite_dir=str(self._rundir or ""),
                            fast_sqlite=sqlite.fast_sqlite_enabled(),
                            fast_postgresql=postgresql.fast_postgresql_enabled(),
                        )
                        for slot in range(1, suite.plan.workers + 1)
                    }
                )
                self._cloning_bar = self._start_bar(
                    f"cloning them for {len(cloned)} of {suite.plan.workers} workers"
                )
                cloning_started = True
                self._cloning = clones.Cloning(
                    old_config,
                    suite.plan.workers,
                    self.verbosity,
                    suite.slot_ready,
                    cloned,
                )
                suite.cloning = self._cloning
                self._check_interrupts()
        except BaseException:
            # No worker or clone left behind; setup_databases drops the rest.
            with self._cleanup_goes_on():
                self._stop_workers()
                self._finish_cloning()
                # Only clones this run started to make: a database already
                # named like one, which the user chose to keep, stays.
                if old_config is not None and cloning_started:
                    clones.destroy_clones(
                        old_config, self._clone_slots(suite), 0, attempts=1
                    )
            raise
        return old_config

    def _clone_slots(self, suite: Any) -> list[int]:
        from .databases.clones import clone_slots

        return clone_slots(suite.plan.workers, self.keepdb)

    def _check_interrupts(self) -> None:
        """Raise a Ctrl-C or SIGTERM that a ``__del__`` swallowed."""
        if self._interrupts is not None:
            self._interrupts.check()

    def run_checks(self, databases: Any) -> None:
        if not self._checked:  # a parallel run checks before cloning
            with self._ctrl_c_raises():
                super().run_checks(databases)

    def _finish_cloning(self) -> None:
        """Wait for the clones still being made; their time goes to
        ``--timing`` and the timeline."""
        cloning, self._cloning = self._cloning, None
        if cloning is None:
            return
        try:
            cloning.wait()
        except (Exception, SystemExit):
            pass  # raised in the run already (GroupedParallelSuite.run)
        finally:
            records = getattr(self.time_keeper, "records", None)
            if records is not None and cloning.took is not None:
                records["  Cloning"].append(cloning.took)
            if self._cloning_bar is not None and cloning.took is not None:
                self._cloning_bar.end = self._cloning_bar.start + cloning.took
            self._cloning_bar = None

    def _start_bar(self, label: str) -> Any:
        """A bar on the timeline's databases lane, from now; None without one."""
        if self.timeline is None:
            return None
        from .reports.timeline import Bar

        now = self.timeline.now()
        return self.timeline.add(Bar("databases", 0, label, now, now))

    @contextlib.contextmanager
    def _timed_bar(self, label: str) -> Iterator[None]:
        """A bar on the timeline's databases lane for what the block does."""
        bar = self._start_bar(label)
        try:
            yield
        finally:
            if bar is not None:
                bar.end = self.timeline.now()

    def _untune_postgresql(self) -> None:
        from .databases.postgresql import untune_postgresql

        untune_postgresql(self._pg_tuning)
        self._pg_tuning = None

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        with self._cleanup_goes_on():
            try:
                self._destroy_databases(old_config, **kwargs)
            finally:
                self._untune_postgresql()

    def _cleanup_goes_on(self) -> Any:
        """A first Ctrl-C or SIGTERM lets the databases be dropped, then
        ends the run (or lets a failed setup's error through); a second one
        ends it sooner."""
        if self._interrupts is None:
            return contextlib.nullcontext()
        return self._interrupts.deferred(
            "\nInterrupted: finishing the cleanup of the test databases "
            "first (a second Ctrl-C ends the run sooner, and may leave some "
            "of them)."
        )

    def _destroy_databases(self, old_config: Any, **kwargs: Any) -> None:
        suite = self._suite
        if suite is None:
            from .databases.sqlite import really_close

            really_close(self._kept_open)
            self._kept_open = []
            return super().teardown_databases(old_config, **kwargs)
        from .databases.clones import destroy_clones, destroy_test_databases
        from .planning import durations

        self._stop_workers()
        durations.save(
            durations.recording_path(durations.durations_path(), self.shard),
            suite.measured,
        )
        try:
            self._finish_cloning()
        finally:
            problems = destroy_clones(
                old_config, self._clone_slots(suite), self.verbosity
            )
            try:
                destroy_test_databases(old_config, self.verbosity, self.keepdb)
            finally:
                for problem in problems:
                    print(f"Could not destroy {problem}", file=sys.stderr)

    def _stop_workers(self) -> None:
        if self._suite is not None:
            self._suite.shutdown()
        if self._forks is not None:
            self._forks.close()
            self._forks = None


def _iter_tests(suite: unittest.TestSuite) -> Iterator[Any]:
    from django.test.utils import iter_test_cases  # type: ignore[attr-defined]

    return iter_test_cases(suite)


@contextlib.contextmanager
def _shared_sync_dir(path: Path) -> Iterator[None]:
    """Give mp_lock & co. one directory for the whole run: this process, its
    workers and their concurrent calls all inherit the variable."""
    from .environment import SYNC_ENV

    path.mkdir(mode=0o700)
    previous = os.environ.get(SYNC_ENV)
    os.environ[SYNC_ENV] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SYNC_ENV, None)
        else:
            os.environ[SYNC_ENV] = previous
