"""How many workers a run gets, and what chose them (in-process)."""

from __future__ import annotations

from django.test import SimpleTestCase, override_settings

from concurrent_runner.errors import ConfigurationError
from concurrent_runner.runner import choose_workers


class ChooseWorkersTests(SimpleTestCase):
    def test_the_flag_then_djangos_flag_then_the_setting(self) -> None:
        with override_settings(CONCURRENT_RUNNER_PARALLEL_GROUPS=3):
            self.assertEqual(
                choose_workers(None, 0),
                (3, "settings.CONCURRENT_RUNNER_PARALLEL_GROUPS (3)"),
            )
            self.assertEqual(choose_workers(None, 2), (2, "--parallel 2"))
            self.assertEqual(choose_workers(5, 2), (5, "--parallel-groups 5"))
            self.assertEqual(choose_workers(1, 0), (1, "--parallel-groups 1"))

    def test_without_any_one_process(self) -> None:
        self.assertEqual(choose_workers(None, 0), (1, "the default (one process)"))
        self.assertEqual(choose_workers(None, 1), (1, "the default (one process)"))

    def test_auto_is_the_number_of_cores(self) -> None:
        with override_settings(CONCURRENT_RUNNER_PARALLEL_GROUPS="auto"):
            workers, chosen = choose_workers(None, 0)
        self.assertGreaterEqual(workers, 1)
        self.assertEqual(chosen, "settings.CONCURRENT_RUNNER_PARALLEL_GROUPS ('auto')")

    def test_a_bad_setting_is_refused_with_its_value(self) -> None:
        for value in ("many", 0, -2):
            with (
                self.subTest(value=value),
                override_settings(CONCURRENT_RUNNER_PARALLEL_GROUPS=value),
                self.assertRaisesMessage(
                    ConfigurationError,
                    f"CONCURRENT_RUNNER_PARALLEL_GROUPS is {value!r}; it must be a "
                    f"positive integer or 'auto'.",
                ),
            ):
                choose_workers(None, 0)
