"""End-to-end: what works under pytest-django, without our test runner.

``tests/pytest_project`` is a pytest-django project whose tests make
concurrent calls (``ConcurrentTestMixin`` in a ``TransactionTestCase``, the
plain function in a ``django_db(transaction=True)`` test) and share
``mp_lock`` and ``mp_message_board`` with them, on the database DB_VENDOR
names (a file for SQLite).

Needs pytest and pytest-django (.ci/run installs them; in CI a missing one
fails this test).
"""

from __future__ import annotations

import re

from django.test import SimpleTestCase

from .e2e import ROOT, run
from .optional import require

PYTEST_PROJECT = ROOT / "tests" / "pytest_project"


class PytestDjangoTests(SimpleTestCase):
    def setUp(self):
        require(self, "pytest", "pytest_django")

    def test_calls_and_sync_helpers_work_under_pytest_django(self):
        result = run(["-m", "pytest", "-v"], cwd=PYTEST_PROJECT)
        self.assertEqual(result.returncode, 0, result.output)
        passed = re.findall(r"^tally/test_tally\.py::(\S+) PASSED", result.output, re.M)
        self.assertEqual(
            sorted(passed),
            [
                "RefusedTests::test_a_testcase_is_refused_with_the_fix",
                "TallyTests::test_calls_see_the_test_database_and_share_the_lock",
                "test_a_transaction_is_refused",
                "test_message_board_is_shared_with_the_calls",
                "test_plain_function_sees_committed_rows",
                "test_trail_first_and_last_in_one_process",
            ],
            result.output,
        )
