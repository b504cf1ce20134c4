"""End-to-end: mp_lock and mp_message_board shared across a run's workers."""

from __future__ import annotations

from django.test import SimpleTestCase, tag

from .e2e import manage


@tag("any_database")
class SharedAcrossWorkersTests(SimpleTestCase):
    def test_counter_under_mp_lock_loses_nothing_across_workers(self):
        # syncing.tests.ZCheck (isolated_serial, so it runs last) fails if an
        # increment was lost or if only one worker took part.
        for args in ((), ("--parallel-groups", "2"), ("--parallel-groups", "4")):
            with self.subTest(args=args):
                result = manage("syncing", "-v", "2", *args)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(result.ran, 5)
                self.assertEqual(
                    result.statuses()["syncing.tests.ZCheck.test_nothing_was_lost"],
                    "ok",
                )
