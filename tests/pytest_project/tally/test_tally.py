"""concurrent_runner under pytest-django, without its test runner."""

from __future__ import annotations

import pytest
from django.test import TestCase, TransactionTestCase

from concurrent_runner import (
    ConcurrentCallError,
    ConcurrentTestMixin,
    call_concurrently,
    mp_lock,
    mp_message_board,
    mp_trail,
)

from .calls import count_on_board, increment_under_lock, read_board, read_tally
from .models import Tally


class TallyTests(ConcurrentTestMixin, TransactionTestCase):
    """A unittest-style class, collected by pytest-django."""

    def test_calls_see_the_test_database_and_share_the_lock(self):
        Tally.objects.create(name="hits")
        pids = self.call_concurrently(5, increment_under_lock, name="hits")
        self.assertEqual(pids.errors, [])
        self.assertEqual(len(set(pids)), 5)  # five processes
        # No update lost: the five calls took one lock between them.
        self.assertEqual(Tally.objects.get(name="hits").value, 5)


class RefusedTests(ConcurrentTestMixin, TestCase):
    def test_a_testcase_is_refused_with_the_fix(self):
        with self.assertRaisesRegex(ConcurrentCallError, "TransactionTestCase"):
            self.call_concurrently(2, read_tally, name="hits")


@pytest.mark.django_db(transaction=True)
def test_plain_function_sees_committed_rows():
    Tally.objects.create(name="seen", value=7)
    assert call_concurrently(3, read_tally, name="seen") == [7, 7, 7]


@pytest.mark.django_db(transaction=True)
def test_message_board_is_shared_with_the_calls():
    mp_message_board["greeting"] = "hello"
    assert call_concurrently(2, read_board, key="greeting") == ["hello", "hello"]
    call_concurrently(4, count_on_board, key="count")
    with mp_lock:
        assert mp_message_board["count"] == 4


def test_trail_first_and_last_in_one_process():
    with mp_trail("resource", "start") as first:
        assert first
    with mp_trail("resource", "finish") as last:
        assert last


@pytest.mark.django_db
def test_a_transaction_is_refused():
    # pytest-django's plain django_db wraps the test in a transaction.
    with pytest.raises(ConcurrentCallError, match="inside a transaction"):
        call_concurrently(2, read_tally, name="hits")
