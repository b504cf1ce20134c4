"""concurrent_runner.exiting: the collector is frozen at exit, once."""

from __future__ import annotations

import gc
from unittest import mock

from django.test import SimpleTestCase, override_settings

from concurrent_runner import exiting


@mock.patch.object(exiting, "_registered", False)
class SkipFinalCollectionTests(SimpleTestCase):
    def test_the_collector_is_frozen_at_exit_once_per_process(self) -> None:
        with mock.patch("atexit.register") as register:
            exiting.skip_final_collection()
            exiting.skip_final_collection()  # a second run_tests() call
        register.assert_called_once_with(gc.freeze)

    @override_settings(CONCURRENT_RUNNER_FAST_EXIT=False)
    def test_not_when_the_setting_says_no(self) -> None:
        with mock.patch("atexit.register") as register:
            exiting.skip_final_collection()
        register.assert_not_called()
