"""``concurrent_runner.Runner``: Django's DiscoverRunner, run in parallel groups.

``manage.py test --parallel-groups N`` (or Django's own ``--parallel N``)
discovers and filters tests exactly as Django does, splits them into units
by ``mp_group`` and plans them; a parallel run is then a
``parallel.session.ParallelSession``, which owns the workers, the clones of
the test databases and their teardown. Without it (one worker) it is
DiscoverRunner, except that an in-memory SQLite test database becomes a
file that other processes can open, and that the test databases are tuned
for being thrown away (``databases.sqlite``, ``databases.postgresql``,
``databases.flush``).

This class holds DiscoverRunner's hooks and the flags; what one call of
``run_tests`` holds lives in a ``_RunState`` for that call only.
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
from dataclasses import dataclass, field
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

from .environment import Role, process_role
from .errors import ConfigurationError, RunInterrupted
from .parallel.interrupts import Interrupts
from .planning.groups import build_units, class_label
from .planning.sharding import Shard, resolve_shard, shard_argument
from .reports.writing import check_report_path, report_path_argument

if TYPE_CHECKING:  # the parallel and worker sides are imported where used
    from .parallel.session import ParallelSession
    from .parallel.worker import WorkerSpec
    from .planning.groups import Unit
    from .planning.plan import Plan
    from .planning.splitting import Splits


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


def choose_workers(parallel_groups: int | str | None, parallel: Any) -> tuple[int, str]:
    """How many workers, and what chose them: ``--parallel-groups`` first,
    then Django's own ``--parallel`` (or a script's ``parallel=``), then
    ``settings.CONCURRENT_RUNNER_PARALLEL_GROUPS``, else one."""
    if parallel_groups is not None:
        if isinstance(parallel_groups, str):
            parallel_groups = parallel_groups_type(parallel_groups)
        return parallel_groups, f"--parallel-groups {parallel_groups}"
    if parallel == "auto":
        parallel = default_workers()
    if isinstance(parallel, int) and parallel > 1:
        return parallel, f"--parallel {parallel}"
    from .conf import parallel_groups as setting

    value = setting()
    if value is None:
        return 1, "the default (one process)"
    try:
        workers = parallel_groups_type(str(value))
    except argparse.ArgumentTypeError:
        raise ConfigurationError(
            f"CONCURRENT_RUNNER_PARALLEL_GROUPS is {value!r}; it must be a "
            f"positive integer or 'auto'."
        ) from None
    return workers, f"settings.CONCURRENT_RUNNER_PARALLEL_GROUPS ({value!r})"


@dataclass
class _RunState:
    """What one ``run_tests`` call holds, from its start to its end."""

    rundir: Path
    interrupts: Interrupts
    timeline: Any = None  # reports.timeline.Timeline
    junit: Any = None  # reports.junit.JUnitReport
    session: ParallelSession | None = None
    #: Recorded durations (per class, per test), read once.
    recorded: tuple[dict[str, float], dict[str, float]] | None = None
    kept_open: list[Any] = field(default_factory=list)  # sqlite.keep_open_like_memory
    pg_tuning: int | None = None  # postgresql.tune_postgresql's token
    checked: bool = False  # run_checks already ran (a parallel run, before cloning)
    selected: set[str] = field(default_factory=set)  # last_failed.names()
    cloning_bar: Any = None
    coverage: Any = None  # coverage_relay.CoverageRelay, when coverage.py measures


class Runner(DiscoverRunner):
    """A drop-in DiscoverRunner that runs test classes in parallel groups."""

    #: How many times run_tests() has been called in this process, so that a
    #: worker re-running a script that calls the runner twice serves the
    #: right call.
    _calls: ClassVar[Iterator[int]] = itertools.count(1)

    def __init__(
        self,
        *,
        parallel_groups: int | str | None = None,
        group_timeout: float | None = None,
        timeline: str | None = None,
        shard: Shard | tuple[int, int] | str | None = None,
        list_groups: bool = False,
        junit_xml: str | None = None,
        failed: bool = False,
        failed_first: bool = False,
        sequence: str | None = None,
        bisect: str | None = None,
        no_split: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.no_split = no_split
        check_report_path("--timeline", timeline)
        check_report_path("--junit-xml", junit_xml)
        self.failed = failed
        self.failed_first = failed_first
        self.sequence = Path(sequence) if sequence else None
        self.bisect = Path(bisect) if bisect else None
        self.group_timeout = group_timeout
        self.timeline_path = Path(timeline) if timeline else None
        self.junit_path = Path(junit_xml) if junit_xml else None
        self.shard = resolve_shard(shard)  # "auto": the CI variables, now
        self.list_groups = list_groups
        self.parallel_groups, self.workers_chosen_by = choose_workers(
            parallel_groups, self.parallel
        )
        if self.sequence or self.bisect:
            # In one process, in the file's order (see reproduce).
            self.parallel_groups, self.workers_chosen_by = 1, "--sequence"
        # Our workers run the tests, never Django's ParallelTestSuite.
        self.parallel = 0
        if self.parallel_groups > 1 and self.pdb:
            raise ConfigurationError(
                "You cannot use --pdb with parallel tests; pass "
                "--parallel-groups=1 to use it."
            )
        self._call = 0
        self._run: _RunState | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--parallel-groups",
            type=parallel_groups_type,
            default=None,
            metavar="N",
            help=(
                "Run test classes in up to N worker processes, grouped and "
                'isolated by their mp_group attribute. Use the value "auto" '
                "for one worker per processor core. Django's own --parallel "
                "N runs the same workers."
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
            "--no-split",
            action="store_true",
            help=(
                "Run every test class whole on one worker: never split a long "
                "class into chunks of its tests, even where recorded durations "
                "show that this would shorten the run."
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
        order = parser.add_mutually_exclusive_group()
        order.add_argument(
            "--sequence",
            metavar="FILE",
            default=None,
            help=(
                "Run exactly the tests FILE lists, in its order, in one "
                "process (a parallel run writes such a file for each failure: "
                "the tests its worker ran before it)."
            ),
        )
        order.add_argument(
            "--bisect",
            metavar="FILE",
            default=None,
            help=(
                "Find which test of a --sequence FILE, run before its last "
                "(failing) test, makes that test fail."
            ),
        )
        rerun = parser.add_mutually_exclusive_group()
        rerun.add_argument(
            "--failed",
            action="store_true",
            help=(
                "Run only the tests that failed or errored last time (all of "
                "them if none did)."
            ),
        )
        rerun.add_argument(
            "--failed-first",
            action="store_true",
            help="Run the tests that failed or errored last time first, then the rest.",
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
        match process_role():
            case Role.CALL_SERVER:
                # Started to serve concurrent calls for a project configured
                # by settings.configure() (calls.concurrent.server_command).
                from django.core.management import call_command

                call_command("concurrent_call_wrapper", "--serve")
                raise SystemExit(0)  # the rest of the script is not ours to run
            case Role.WORKER:
                from .parallel.worker import WorkerSpec

                spec = WorkerSpec.from_environ()
                if spec is not None:
                    return self._serve(spec, test_labels)
        if self.list_groups:
            return self._list_groups(test_labels)
        if self.bisect is not None:
            return self._bisect(self.bisect)
        return self._run_tests(test_labels, **kwargs)

    def _bisect(self, path: Path) -> int:
        """--bisect FILE: fresh runs of this command, each in one process."""
        from .reproduce import bisect_command

        found = bisect_command(path, self.log)
        self.log(found.verdict)
        if len(found.culprits) == 1:
            from .reproduce import write_sequence

            pair = path.with_name(f"{path.stem}.pair.txt")
            with contextlib.suppress(OSError):
                write_sequence(pair, [*found.culprits, found.failing])
                from .reproduce import command_with

                self.log(f"To run the two: {command_with('--sequence', pair)}")
        return 0

    def _run_tests(self, test_labels: list[str], **kwargs: Any) -> int:
        from .databases.flush import fast_flush
        from .databases.sqlite import file_backed_sqlite, tuned_sqlite
        from .rundirs import make_run_dir

        # (and remove the run directories of runs killed earlier)
        run = self._run = _RunState(make_run_dir(), Interrupts())
        run.coverage = _measure_children(run.rundir)
        # -v 2 ends a parallel run with its timings; an in-process run stays
        # exactly DiscoverRunner's unless a timeline is asked for.
        if self.timeline_path is not None or (
            self.verbosity >= 2 and self.parallel_groups > 1
        ):
            from .reports.timeline import Timeline

            run.timeline = Timeline()
        if self.junit_path is not None:
            from .reports.junit import JUnitReport

            run.junit = JUnitReport()
        try:
            with (
                run.interrupts.handled(),
                file_backed_sqlite(run.rundir),
                tuned_sqlite(run.rundir),
                fast_flush(),
                _shared_sync_dir(run.rundir / "sync"),
            ):
                failures = super().run_tests(test_labels, **kwargs)
        except KeyboardInterrupt:
            if run.interrupts.received is None:
                raise  # raised by code, not by a signal: not ours to explain
        finally:
            try:
                self._untune_postgresql()
                if run.session is not None:
                    run.session.close()
                _end_children(run)
                unwritten = self._write_reports()
            finally:
                shutil.rmtree(run.rundir, ignore_errors=True)
                self._run = None
        if run.interrupts.received is not None:
            raise RunInterrupted(run.interrupts.received)
        # A report that could not be written fails the run.
        return failures + unwritten

    def _state(self) -> _RunState:
        if self._run is None:
            raise RuntimeError("Runner: this hook is called only inside run_tests()")
        return self._run

    def setup_test_environment(self, **kwargs: Any) -> None:
        super().setup_test_environment(**kwargs)
        if self._run is not None:
            # unittest's handler (installed just now) stops the tests gently
            # at a first Ctrl-C; it tells us too, so the run then fails.
            unittest.registerResult(self._run.interrupts)  # type: ignore[arg-type]

    def _write_reports(self) -> int:
        """Write the reports asked for; how many could not be written."""
        from .reports.writing import write_reports

        run = self._state()
        return write_reports(
            [
                ("timeline", run.timeline, self.timeline_path),
                ("JUnit XML report", run.junit, self.junit_path),
            ],
            self.log,
        )

    def get_resultclass(self) -> Any:
        base = super().get_resultclass()
        run = self._run
        mixins: list[type] = []
        if run is not None and run.timeline is not None and run.session is None:
            # In-process: a timeline bar per test class as the result sees it.
            from .reports.timeline import RecordingResult

            mixins.append(RecordingResult)
        if run is not None and run.junit is not None:
            from .reports.junit import JUnitRecording

            mixins.append(JUnitRecording)
        if run is not None and run.session is not None:
            from .parallel.replay import WorkerTracebacks

            mixins.append(WorkerTracebacks)
        from .reports.skips import SKIPS_UNSTARTED, NamedSkips
        from .reports.summary import ShortSummary

        if SKIPS_UNSTARTED and self.verbosity >= 2:
            mixins.append(NamedSkips)
        mixins.append(ShortSummary)
        return type(
            "ReportingResult",
            (*mixins, base or unittest.TextTestResult),
            {
                "timeline": run.timeline if run else None,
                "junit": run.junit if run else None,
            },
        )

    def _serve(self, spec: WorkerSpec, test_labels: list[str]) -> int:
        """Run as a worker for the parent's parallel run_tests() call."""
        if spec.run != self._call:
            # Another call of a script that runs the runner more than once;
            # the parent runs (or ran) it itself.
            return 0
        from .coverage_relay import measure_fresh_child
        from .databases.flush import install, wanted
        from .parallel.processes import connect_child
        from .parallel.worker import dump_stacks_on_sigusr1, serve

        measure_fresh_child()
        if spec.shuffle_seed is not None:
            self.shuffle = spec.shuffle_seed
        dump_stacks_on_sigusr1(spec.stack_file)
        if wanted():
            install()  # a forked worker has it already
        setup_test_environment(debug=self.debug_mode)
        try:
            suite = DiscoverRunner.build_suite(self, test_labels)
            tests = list(_iter_tests(suite))
            serve(
                connect_child(spec.fd),
                tests,
                failfast=self.failfast,
                buffer=self.buffer,
                stdio=spec.stdio,
            )
        finally:
            teardown_test_environment()
        # The rest of the script that started this process (a runtests.py
        # that goes on after run_tests()) is the parent's to run; atexit
        # handlers (coverage's) still run.
        from .parallel.capture import flush_stdio

        flush_stdio()
        raise SystemExit(0)

    # -- suite -------------------------------------------------------------

    def build_suite(self, test_labels: Any = None, **kwargs: Any) -> Any:
        suite, tests, units = self._select(test_labels, **kwargs)
        run = self._run
        if self.parallel_groups <= 1 or run is None:
            return suite
        if not tests:
            return suite
        splits = self._split(tests, units, self._estimates(tests, units))
        units, estimates = splits.units, splits.estimates
        # Even a plan of one worker runs in one: a crash costs only its test,
        # and --group-timeout applies, as asked for.
        plan = self._plan(units, estimates)
        from .parallel.session import ParallelSession, SessionOptions
        from .planning.plan import describe_plan

        self.log(
            f"Running {len(units)} unit(s) in {len(plan.phases)} phase(s) on "
            f"{plan.workers} worker process{'es' if plan.workers != 1 else ''}"
            f"{splits.summary()}."
        )
        self.log(
            f"The number of workers was chosen by {self.workers_chosen_by}.",
            level=logging.DEBUG,
        )
        for line in describe_plan(plan, units, tests=False):
            self.log(line, level=logging.DEBUG)
        listeners = []
        if run.timeline is not None:
            from .reports.timeline import TimelineRecorder

            run.timeline.workers = plan.workers
            listeners.append(
                TimelineRecorder(run.timeline, units, [t.id() for t in tests])
            )
        run.session = ParallelSession(
            tests,
            units,
            plan,
            estimates,
            SessionOptions(
                run=self._call,
                rundir=run.rundir,
                verbosity=self.verbosity,
                interactive=self.interactive,
                failfast=self.failfast,
                keepdb=self.keepdb,
                debug_sql=self.debug_sql,
                shuffle_seed=self.shuffle_seed,
                group_timeout=self.group_timeout,
                buffer=self.buffer,
            ),
            listeners=listeners,
            listeners_for=lambda result: [
                self._progress(result, units, estimates, tests),
                self._sequences(result, tests),
            ],
            interrupts=run.interrupts,
        )
        return run.session.suite

    def _sequences(self, result: unittest.TestResult, tests: list[Any]) -> Any:
        from .conf import sequences_dir
        from .reproduce import Sequences

        return Sequences([t.id() for t in tests], sequences_dir(), result)

    def _progress(
        self,
        result: unittest.TestResult,
        units: list[Unit],
        estimates: list[float],
        tests: list[Any],
    ) -> Any:
        from .reports.progress import Progress, is_terminal

        stream = getattr(result, "stream", None) or sys.stderr
        if is_terminal(stream) and self.verbosity == 1:
            # The status line shows the progress; the dots would break it.
            result.dots = False  # type: ignore[attr-defined]
        return Progress(
            stream,
            units,
            verbosity=self.verbosity,
            estimates=estimates,
            test_ids=[t.id() for t in tests],
        )

    def _select(
        self, test_labels: Any, **kwargs: Any
    ) -> tuple[Any, list[Any], list[Unit]]:
        """Django's suite, its tests and their units, for this shard."""
        if self.sequence is not None:
            from .reproduce import load_sequence_suite

            tests = load_sequence_suite(self.test_loader, self.sequence)
            self.log(f"Running the {len(tests)} test(s) of {self.sequence}, in order.")
            return self.test_suite(tests), tests, build_units(tests)
        with self._ctrl_c_raises():  # discovery imports every test module
            suite = super().build_suite(test_labels, **kwargs)
        tests = list(_iter_tests(suite))
        if self.failed or self.failed_first:
            tests = self._last_failed_first(tests)
            suite = self.test_suite(tests)
        # Checked in every mode, so a bad mp_group fails before any test runs
        # whether or not this run is parallel.
        units = build_units(tests)
        if self.shard is not None:
            tests, units = self._shard(tests, units, self.shard)
            suite = self.test_suite(tests)
        if self._run is not None:
            from .planning.last_failed import names

            self._run.selected = names(tests)
        return suite, tests, units

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        # Within Django's try/finally that tears the databases down.
        self._check_interrupts()
        # What setup wrote to stdout (migrate's "Applying ... OK") must not
        # surface in the middle of the results when both go to one log.
        sys.stdout.flush()
        run = self._state()
        result = super().run_suite(suite, **kwargs)
        if self.verbosity >= 2 and run.timeline is not None and run.session:
            from .reports.timeline import summarise, timings_lines

            for line in timings_lines(summarise(run.timeline)):
                self.log(line)
        return result

    def _last_failed_first(self, tests: list[Any]) -> list[Any]:
        """--failed, --failed-first: what failed last time, alone or first."""
        from .conf import failed_file
        from .planning import last_failed

        path = failed_file()
        chosen, again = last_failed.select(
            tests, last_failed.load(path), first=self.failed_first
        )
        if not again:
            self.log(
                f"No failures recorded by the last run ({path}) among the "
                f"{len(tests)} selected test(s): running them all."
            )
        elif self.failed:
            self.log(f"Running the {again} test(s) that failed last time.")
        else:
            self.log(f"Running the {again} test(s) that failed last time first.")
        return chosen

    def suite_result(self, suite: Any, result: Any, **kwargs: Any) -> Any:
        from .conf import failed_file
        from .planning import last_failed

        path = failed_file()
        recorded = last_failed.load(path)
        if result.shouldStop:
            # Failfast or interrupted: what did not run keeps its record.
            updated = recorded | last_failed.failed_in(result)
        else:
            updated = last_failed.update(recorded, self._state().selected, result)
        if updated != recorded:
            last_failed.save(path, updated)
        return super().suite_result(suite, result, **kwargs)

    def _history(self) -> dict[str, float]:
        """Class durations of earlier runs, read once per run."""
        return self._recorded()[0]

    def _test_history(self) -> dict[str, float]:
        """Test durations of earlier runs, read once per run."""
        return self._recorded()[1]

    def _recorded(self) -> tuple[dict[str, float], dict[str, float]]:
        """The durations file, read once per run (kept on the run state)."""
        from .planning import durations

        run = self._run
        if run is None:
            return durations.load_both(durations.durations_path())
        if run.recorded is None:
            run.recorded = durations.load_both(durations.durations_path())
        return run.recorded

    def _estimates(self, tests: list[Any], units: list[Unit]) -> list[float]:
        from .planning import durations

        tests_per_class = Counter(class_label(t) for t in tests)
        return durations.estimate(units, tests_per_class, self._history())

    def _split(
        self, tests: list[Any], units: list[Unit], estimates: list[float]
    ) -> Splits:
        """Long classes as chunks on several workers, where the recorded
        durations show that this shortens the run (``planning.splitting``);
        not with --no-split or CONCURRENT_RUNNER_SPLIT_CLASSES = False."""
        from .conf import split_classes
        from .planning.groups import read_split
        from .planning.splitting import Splits, split_long_classes

        if self.no_split or not split_classes() or self.parallel_groups < 2:
            return Splits(units, estimates)
        refused = {class_label(t) for t in tests if not read_split(type(t))}
        return split_long_classes(
            units,
            estimates,
            [t.id() for t in tests],
            classes=self._history(),
            tests=self._test_history(),
            workers=self.parallel_groups,
            refused=refused,
        )

    def _plan(self, units: list[Unit], estimates: list[float]) -> Plan:
        from .planning.plan import make_plan

        return make_plan(units, estimates, self.parallel_groups)

    def _shard(
        self, tests: list[Any], units: list[Unit], shard: Shard
    ) -> tuple[list[Any], list[Unit]]:
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
        from .planning.plan import describe_plan

        _suite, tests, units = self._select(test_labels)
        splits = self._split(tests, units, self._estimates(tests, units))
        units = splits.units
        plan = self._plan(units, splits.estimates)
        unit = "s" if self._history() else " (in tests: no durations recorded yet)"
        print(
            f"{len(tests)} test(s) in {len(units)} unit(s), {len(plan.phases)} "
            f"phase(s), {plan.workers} worker(s){splits.summary()}. Estimated "
            f"wall time {plan.estimate:.2f}{unit}."
        )
        for line in describe_plan(plan, units, tests=True):
            print(line)
        return 0

    # -- databases ---------------------------------------------------------

    def setup_databases(self, **kwargs: Any) -> Any:
        from django.db import connections

        from .databases import interrupted_setup, postgresql

        run = self._state()
        aliases = kwargs.get("aliases")
        # Only what this run creates: an empty set (no test uses a database)
        # is nothing, so an interrupt drops nothing it did not make.
        used = connections if aliases is None else aliases
        if postgresql.fast_postgresql_enabled() and run.pg_tuning is None:
            # Before the migrations, and before the fork server: its workers
            # inherit it for their clones.
            run.pg_tuning = postgresql.tune_postgresql(
                postgresql.postgresql_test_names(used)
            )
        planned = interrupted_setup.planned_test_databases(used)
        with interrupted_setup.noting_made(used) as made:
            try:
                if run.session is None:
                    return self._setup_in_process(**kwargs)
                return self._setup_for_workers(run.session, set(used), **kwargs)
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
        if self._run is None:
            return contextlib.nullcontext()
        return self._run.interrupts.ctrl_c_raises()

    def _setup_in_process(self, **kwargs: Any) -> Any:
        with self._ctrl_c_raises(), self._timed_bar("creating the test databases"):
            created = super().setup_databases(**kwargs)
        self._check_interrupts()
        from .databases.sqlite import keep_open_like_memory

        self._state().kept_open = keep_open_like_memory(self._state().rundir)
        return created

    def _setup_for_workers(
        self, session: ParallelSession, used: set[str], **kwargs: Any
    ) -> Any:
        from .parallel.session import serialized_aliases_needed

        # A TestCase that a worker runs after a TransactionTestCase's flush
        # gets the migrations' contents back (parallel.unit_suite).
        serialized = set(kwargs.pop("serialized_aliases", None) or ())
        serialized |= serialized_aliases_needed(session.tests) & used

        def make_databases() -> Any:
            with (
                self._ctrl_c_raises(),
                self._timed_bar("creating the test databases"),
            ):
                old_config = _setup_databases(
                    self.verbosity,
                    self.interactive,
                    time_keeper=self.time_keeper,
                    keepdb=self.keepdb,
                    debug_sql=self.debug_sql,
                    parallel=0,
                    serialized_aliases=serialized,
                    **kwargs,
                )
            self._check_interrupts()  # before any clone is made
            return old_config

        def run_checks() -> None:
            self.run_checks(used)
            self._state().checked = True

        def on_cloning(cloning: Any) -> None:
            timeline = self._state().timeline
            if timeline is not None:
                self._state().cloning_bar = timeline.clones_bar(
                    len(cloning.cloned), len(cloning.kept), session.workers
                )
            self._check_interrupts()

        return session.setup_databases(
            make_databases,
            run_checks,
            on_cloning=on_cloning,
            cleanup_guard=self._cleanup_goes_on,
        )

    def _check_interrupts(self) -> None:
        """Raise a Ctrl-C or SIGTERM that a ``__del__`` swallowed."""
        if self._run is not None:
            self._run.interrupts.check()

    def run_checks(self, databases: Any) -> None:
        if self._run is None or not self._run.checked:
            with self._ctrl_c_raises():
                super().run_checks(databases)

    def _timed_bar(self, label: str) -> Any:
        """A bar on the timeline's databases lane for what the block does."""
        timeline = self._run.timeline if self._run is not None else None
        return timeline.timed(label) if timeline else contextlib.nullcontext()

    def _untune_postgresql(self) -> None:
        from .databases.postgresql import untune_postgresql

        if self._run is not None:
            untune_postgresql(self._run.pg_tuning)
            self._run.pg_tuning = None

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
        if self._run is None:
            return contextlib.nullcontext()
        return self._run.interrupts.deferred(
            "\nInterrupted: finishing the cleanup of the test databases "
            "first (a second Ctrl-C ends the run sooner, and may leave some "
            "of them)."
        )

    def _destroy_databases(self, old_config: Any, **kwargs: Any) -> None:
        run = self._state()
        session = run.session
        if session is None:
            from .databases.sqlite import really_close

            really_close(run.kept_open)
            run.kept_open = []
            return super().teardown_databases(old_config, **kwargs)
        from .planning import durations

        session.close()
        durations.save(
            durations.recording_path(durations.durations_path(), self.shard),
            session.controller.measured,
            session.controller.measured_tests,
        )
        try:
            session.teardown_databases(old_config)
        finally:
            took = session.cloning_took
            records = getattr(self.time_keeper, "records", None)
            if records is not None and took is not None:
                records["  Cloning"].append(took)
            if run.cloning_bar is not None and took is not None:
                run.cloning_bar.end = run.cloning_bar.start + took


def _iter_tests(suite: unittest.TestSuite) -> Iterator[Any]:
    from django.test.utils import iter_test_cases  # type: ignore[attr-defined]

    return iter_test_cases(suite)


def _measure_children(rundir: Path) -> Any:
    """When coverage.py measures this process, have every process of the
    run measured too (``coverage_relay``)."""
    from .coverage_relay import CoverageRelay

    relay = CoverageRelay.start(rundir / "coverage")
    if relay is not None:
        relay.publish()
    return relay


def _end_children(run: _RunState) -> None:
    """After the workers: end this process's call server, started during
    the run with the run's directories, then fold the coverage data of the
    run's processes into this one's."""
    calls = sys.modules.get("concurrent_runner.calls.concurrent")
    if calls is not None:
        calls.stop_server()
    if run.coverage is not None:
        run.coverage.finish()
        run.coverage = None


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
