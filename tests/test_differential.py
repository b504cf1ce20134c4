"""The differential test against DiscoverRunner, on a fixed budget (#19).

Hypothesis generates small suites (tests/differential/) and each is run by
Django's DiscoverRunner and by ours; see tests/differential/oracle.py for
what must agree. The examples are seeded by the Python and Django line
(``leg_seed``), so that each CI leg runs the same suites every time and the
legs together run different ones; ``python -m tests.differential`` hunts
further. A failure prints the suite as a JSON file's content, for
``--replay``.

Tagged "differential": ``runtests.py --tag differential`` runs only these.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from django.test import SimpleTestCase
from django.test.utils import tag

from tests.dbconfig import vendor
from tests.differential import oracle, spec
from tests.optional import require

#: Suites per class: each costs two runs of a small project (1 to 8 s on a
#: loaded 2-core machine). PostgreSQL and MariaDB clone more slowly.
#: DIFFERENTIAL_EXAMPLES=N asks for more.
BUDGET = int(os.environ.get("DIFFERENTIAL_EXAMPLES") or 0) or (
    4 if vendor() == "sqlite" else 1
)


def leg_seed() -> int:
    """The Hypothesis seed: DIFFERENTIAL_SEED, else one of this Python and
    Django line. The same on every run of a leg, so a failure comes back;
    different between CI's legs, so that together they try different
    suites (the first example, the simplest, is the same everywhere)."""
    if os.environ.get("DIFFERENTIAL_SEED"):
        return int(os.environ["DIFFERENTIAL_SEED"])
    import django

    return sys.version_info[0] * 10_000 + sys.version_info[1] * 100 + django.VERSION[0]


def generated(**options: Any) -> Callable[..., Any]:
    """Run the test on BUDGET generated cases (``strategies.cases(**options)``)
    drawn with ``leg_seed()``. Without Hypothesis (a plain ``pip install
    .``) it skips, and fails in CI."""

    def decorate(test: Callable[..., Any]) -> Callable[..., Any]:
        if importlib.util.find_spec("hypothesis") is None:

            def missing(self: SimpleTestCase) -> None:
                require(self, "hypothesis")

            return missing
        from hypothesis import HealthCheck, Phase, given, seed, settings

        from tests.differential.strategies import cases

        return seed(leg_seed())(
            settings(
                max_examples=BUDGET,
                database=None,
                deadline=None,
                # Each example is two runs: a failure prints its suite unshrunk.
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(cases(**options))(test))
        )

    return decorate


def assert_agrees(test: SimpleTestCase, case: spec.Case) -> None:
    verdict = oracle.compare(case)
    if not verdict.ok:
        test.fail(
            "ours and DiscoverRunner disagree; replay with `python -m "
            "tests.differential --replay FILE`, FILE holding:\n"
            f"{spec.to_json(case)}\n{verdict.report()}"
        )


@tag("differential")
class ForkedWorkersTests(SimpleTestCase):
    @generated(fork=True, faults=False)
    def test_forked_workers_agree_with_discover_runner(self, case: spec.Case) -> None:
        assert_agrees(self, case)


@tag("differential")
class FreshWorkersTests(SimpleTestCase):
    @generated(fork=False, faults=False)
    def test_fresh_workers_agree_with_discover_runner(self, case: spec.Case) -> None:
        assert_agrees(self, case)


@tag("differential")
class FaultTests(SimpleTestCase):
    """A worker that dies or hangs costs only the test or fixture it was in."""

    @generated(faults=True, max_modules=2)
    def test_faults_cost_only_what_was_in_flight(self, case: spec.Case) -> None:
        assert_agrees(self, case)
