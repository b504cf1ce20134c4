"""What the differential test found, as fixed suites (#19).

Each case is a minimised generated suite (tests/differential/) that ours
reported differently from DiscoverRunner, or, where serial Django would
die, differently from what the spec says; each was fixed. The first ones
were found by an earlier version of the generator and fixed before this
file existed (they pass on the commits that fixed them); they stay as
sanity cases for the generator's oracle.
"""

from __future__ import annotations

from django.test import SimpleTestCase
from django.test.utils import tag

from tests.differential.spec import Case, ClassSpec, ModuleSpec, RunSpec, TestSpec
from tests.test_differential import assert_agrees


def cls(
    name: str,
    kind: str = "SimpleTestCase",
    tests: list[TestSpec] | None = None,
    **kwargs: object,
) -> ClassSpec:
    return ClassSpec(
        name=name,
        kind=kind,
        tests=tests or [TestSpec("test_alpha0"), TestSpec("test_beta1")],
        **kwargs,  # type: ignore[arg-type]
    )


def module(name: str, *classes: ClassSpec, **fixtures: str) -> ModuleSpec:
    return ModuleSpec(name=name, classes=list(classes), fixtures=fixtures)


@tag("differential")
class EarlierFindingsTests(SimpleTestCase):
    def test_output_is_caught_at_the_file_descriptor_level(self) -> None:
        printing = TestSpec(
            "test_alpha0",
            outcome="fail",
            output=["oswrite", "subprocess", "badbytes", "buffer", "stderr"],
        )
        case = Case(
            [module("m0", cls("C0", tests=[printing, TestSpec("test_beta1")]))],
            RunSpec(workers=2, fork=True),
        )
        assert_agrees(self, case)

    def test_a_crash_in_set_up_class_is_one_error(self) -> None:
        case = Case(
            [
                module(
                    "m0",
                    cls("C0", "TestCase", fixtures={"setUpClass": "fault:segfault"}),
                    cls("C1"),
                )
            ],
            RunSpec(workers=2, fork=False),
        )
        assert_agrees(self, case)

    def test_a_crash_in_set_up_module_is_one_error(self) -> None:
        case = Case(
            [module("m0", cls("C0"), cls("C1"), setUpModule="fault:exit")],
            RunSpec(workers=2, fork=True),
        )
        assert_agrees(self, case)

    def test_a_crash_after_the_units_last_test_fails_the_run(self) -> None:
        case = Case(
            [
                module("m0", cls("C0", fixtures={"tearDownClass": "fault:kill"})),
                module("m1", cls("C1"), tearDownModule="fault:hang"),
            ],
            RunSpec(workers=2, fork=True, group_timeout=8.0),
        )
        assert_agrees(self, case)

    def test_a_module_fixture_error_is_reported_once(self) -> None:
        case = Case(
            [module("m0", cls("C0"), cls("C1"), cls("C2"), tearDownModule="error")],
            RunSpec(workers=3, fork=True),
        )
        assert_agrees(self, case)

    def test_a_testcase_after_a_flush_finds_the_data_migrations_rows(self) -> None:
        case = Case(
            [
                module(
                    "m0",
                    cls("C0", "TransactionTestCase"),
                    cls("C1", "TransactionTestCase", mp_group=["g0", "serial"]),
                    cls("C2", "TestCase", mp_group="g0"),
                    cls("C3", "TestCase", mp_group=["g1", "isolated_serial"]),
                )
            ],
            RunSpec(workers=2, fork=True),
        )
        assert_agrees(self, case)

    def test_a_one_unit_plan_runs_in_a_worker(self) -> None:
        crash = TestSpec("test_alpha0", fault="exit")
        case = Case(
            [module("m0", cls("C0", tests=[crash, TestSpec("test_beta1")]))],
            # --parallel-groups 1 runs in one process, as documented; 2 and a
            # plan that needs only one worker must still run in a worker.
            RunSpec(workers=2, fork=True),
        )
        assert_agrees(self, case)

    def test_a_class_whose_first_test_is_skipped(self) -> None:
        tests = [
            TestSpec("test_alpha0", outcome="skip"),
            TestSpec("test_alpha1", outcome="fail"),
        ]
        case = Case(
            [module("m0", cls("C0", tests=tests), cls("C1"))],
            RunSpec(workers=2, fork=False, shuffle=3),
        )
        assert_agrees(self, case)

    def test_failfast_reports_nothing_as_passed_after_the_first_failure(self) -> None:
        failing = [TestSpec("test_alpha0", outcome="fail")] + [
            TestSpec(f"test_beta{i}") for i in range(1, 4)
        ]
        case = Case(
            [module("m0", cls("C0", tests=failing), cls("C1"), cls("C2"))],
            RunSpec(workers=3, fork=True, failfast=True),
        )
        assert_agrees(self, case)


@tag("differential")
class FindingsTests(SimpleTestCase):
    """Found by this generator, minimised, and fixed."""

    def test_a_skipped_subtest_is_reported_as_the_subtest(self) -> None:
        # Replayed as a skip of the whole test, without the subtest's
        # parameters, once for each skipped subtest.
        tests = [TestSpec("test_alpha0", outcome="subtests", subtests=["skip", "skip"])]
        case = Case([module("m0", cls("C0", tests=tests))], RunSpec(workers=2))
        assert_agrees(self, case)

    def test_the_run_ends_while_a_replacement_worker_is_forked(self) -> None:
        # Every unit's worker dies in setUpModule, and the run is over while
        # the fork server forks replacements: it printed a BrokenPipeError's
        # traceback after the summary (timing-dependent here; the fork
        # server's test in test_forking is deterministic).
        case = Case(
            [module("m0", cls("C0"), cls("C1"), cls("C2"), setUpModule="fault:kill")],
            RunSpec(workers=3, fork=True),
        )
        assert_agrees(self, case)

    def test_after_a_crash_a_transactiontestcase_finds_no_rows_of_it(self) -> None:
        # The crashed test's rows were committed and never flushed: the rest
        # of its class, run by the replacement worker, found them.
        tests = [
            TestSpec("test_alpha0", fault="segfault"),
            TestSpec("test_alpha1"),
        ]
        case = Case(
            [module("m0", cls("C0", "TransactionTestCase", tests=tests))],
            RunSpec(workers=2, fork=False),
        )
        assert_agrees(self, case)

    def test_a_crash_in_the_units_last_test_still_runs_its_teardowns(self) -> None:
        # tearDownClass and tearDownModule, which serially follow the test,
        # never ran: their errors (and whatever they clean up) were lost.
        tests = [TestSpec("test_alpha0"), TestSpec("test_alpha1", fault="kill")]
        case = Case(
            [
                module(
                    "m0",
                    cls(
                        "C0",
                        "TestCase",
                        tests=tests,
                        fixtures={"tearDownClass": "error"},
                    ),
                    tearDownModule="error",
                )
            ],
            RunSpec(workers=2, fork=True),
        )
        assert_agrees(self, case)

    def test_a_crash_in_tear_down_class_still_runs_tear_down_module(self) -> None:
        case = Case(
            [
                module(
                    "m0",
                    cls("C0", "TestCase", fixtures={"tearDownClass": "fault:kill"}),
                    tearDownModule="error",
                )
            ],
            RunSpec(workers=2, fork=False),
        )
        assert_agrees(self, case)

    def test_a_failed_set_up_class_then_a_crash_in_tear_down_module(self) -> None:
        # The class's tests (never run) went to a new worker after the crash,
        # which failed and died the same way, for ever: the run hung.
        case = Case(
            [
                module(
                    "m0",
                    cls("C0", "TestCase", fixtures={"setUpClass": "error"}),
                    tearDownModule="fault:exit",
                ),
                module("m1", cls("C1")),
            ],
            RunSpec(workers=2, fork=False),
        )
        assert_agrees(self, case)

    def test_failfast_ends_a_test_at_its_skipped_subtest(self) -> None:
        # unittest's failfast stops a test at its first subtest that did not
        # succeed, a skip included (serially too, 3.10 to 3.13): the failing
        # subtest after it never runs and the run is OK. The oracle expected
        # the failure (an oracle false positive; ours was right).
        tests = [
            TestSpec(
                "test_alpha0", outcome="subtests", subtests=["skip", "pass", "fail"]
            ),
            TestSpec("test_gamma1", outcome="subtests", subtests=["pass"]),
        ]
        for workers in (1, 2):
            with self.subTest(workers=workers):
                case = Case(
                    [module("m0", cls("C0", "TransactionTestCase", tests=tests))],
                    RunSpec(workers=workers, fork=False, failfast=True),
                )
                assert_agrees(self, case)
