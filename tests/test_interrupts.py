"""Ctrl-C and SIGTERM in the test process: none is lost in a __del__."""

from __future__ import annotations

import signal
import sys
from typing import Any
from unittest import mock

from django.test import SimpleTestCase

from concurrent_runner.parallel.interrupts import Interrupts


class _Dying:
    def __init__(self, sig: signal.Signals) -> None:
        self.sig = sig

    def __del__(self) -> None:
        signal.raise_signal(self.sig)  # the handler runs in here


class SignalTestCase(SimpleTestCase):
    def setUp(self) -> None:
        # As in a terminal: a worker started from a background job would
        # otherwise inherit an ignored SIGINT, which Interrupts leaves alone.
        before = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.addCleanup(signal.signal, signal.SIGINT, before)


class InterruptsTests(SignalTestCase):
    def swallow(self, sig: signal.Signals) -> list[Any]:
        """Receive ``sig`` inside a __del__; what Python reported as ignored."""
        ignored: list[Any] = []
        with mock.patch.object(sys, "unraisablehook", ignored.append):
            _Dying(sig)
        return ignored

    def test_a_signal_raises_keyboard_interrupt_at_once(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            with (
                self.subTest(sig=sig),
                self.assertRaises(KeyboardInterrupt),
                Interrupts().handled(),
            ):
                signal.raise_signal(sig)
                self.fail("not interrupted")

    def test_one_swallowed_by_a_del_is_raised_again_by_check(self):
        interrupts = Interrupts()
        with self.assertRaises(KeyboardInterrupt) as raised, interrupts.handled():
            ignored = self.swallow(signal.SIGTERM)
            # Python lost it: the block goes on...
            self.assertIs(ignored[0].exc_type, KeyboardInterrupt)
            # ...until the run's next step checks.
            interrupts.check()
        self.assertEqual(str(raised.exception), "SIGTERM received")

    def test_the_end_of_the_block_raises_one_nothing_checked(self):
        interrupts = Interrupts()
        with self.assertRaises(KeyboardInterrupt) as raised, interrupts.handled():
            self.swallow(signal.SIGINT)
        self.assertEqual(str(raised.exception), "SIGINT received")

    def test_the_previous_handlers_come_back(self):
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        with Interrupts().handled():
            self.assertNotEqual(
                signal.getsignal(signal.SIGTERM), before[signal.SIGTERM]
            )
        self.assertEqual({sig: signal.getsignal(sig) for sig in before}, before)

    def test_an_ignored_signal_stays_ignored(self):
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.addCleanup(signal.signal, signal.SIGTERM, previous)
        interrupts = Interrupts()
        with interrupts.handled():
            self.assertEqual(signal.getsignal(signal.SIGTERM), signal.SIG_IGN)
            signal.raise_signal(signal.SIGTERM)
        self.assertIsNone(interrupts.received)

    def test_ctrl_c_raises_also_over_a_handler_installed_since(self):
        interrupts = Interrupts()
        gentle = mock.Mock()  # as unittest's: notes the first Ctrl-C only
        with interrupts.handled():
            previous = signal.signal(signal.SIGINT, gentle)
            try:
                with self.assertRaises(KeyboardInterrupt), interrupts.ctrl_c_raises():
                    signal.raise_signal(signal.SIGINT)
                    self.fail("not interrupted")
                self.assertIs(signal.getsignal(signal.SIGINT), gentle)
            finally:
                signal.signal(signal.SIGINT, previous)
            gentle.assert_not_called()
            interrupts.received = None  # it was not swallowed

    def test_ctrl_c_raises_nothing_outside_handled(self):
        before = signal.getsignal(signal.SIGINT)
        with Interrupts().ctrl_c_raises():
            self.assertIs(signal.getsignal(signal.SIGINT), before)

    def test_nothing_received_nothing_raised(self):
        interrupts = Interrupts()
        with interrupts.handled():
            interrupts.check()
        self.assertIsNone(interrupts.received)


class DeferredTests(SignalTestCase):
    """A cleanup that must not stop half way (the databases' teardown)."""

    def test_the_first_signal_waits_for_the_end_of_the_run(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            interrupts = Interrupts()
            steps = []
            with (
                self.subTest(sig=sig),
                mock.patch("sys.stderr") as stderr,
                self.assertRaises(KeyboardInterrupt) as raised,
                interrupts.handled(),
            ):
                with interrupts.deferred("Finishing first."):
                    signal.raise_signal(sig)
                    steps.append("the cleanup went on")
                steps.append("so did the rest of the run")
            self.assertEqual(
                steps, ["the cleanup went on", "so did the rest of the run"]
            )
            self.assertEqual(str(raised.exception), f"{sig.name} received")
            printed = "".join(c.args[0] for c in stderr.write.call_args_list)
            self.assertEqual(printed, "Finishing first.\n")

    def test_a_second_signal_raises_at_once(self):
        interrupts = Interrupts()
        with (
            mock.patch("sys.stderr"),
            self.assertRaises(KeyboardInterrupt),
            interrupts.handled(),
            interrupts.deferred("Finishing first."),
        ):
            signal.raise_signal(signal.SIGINT)
            with self.assertRaises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
                self.fail("not interrupted")

    def test_a_second_signal_in_a_later_cleanup_raises_at_once(self):
        # A failed setup stops its workers, then drops its databases: two
        # blocks, one cleanup.
        interrupts = Interrupts()
        with (
            mock.patch("sys.stderr") as stderr,
            self.assertRaises(KeyboardInterrupt),
            interrupts.handled(),
        ):
            with interrupts.deferred("Finishing first."):
                signal.raise_signal(signal.SIGINT)
            with (
                self.assertRaises(KeyboardInterrupt),
                interrupts.deferred("Finishing first."),
            ):
                signal.raise_signal(signal.SIGINT)
                self.fail("not interrupted")
        printed = "".join(c.args[0] for c in stderr.write.call_args_list)
        self.assertEqual(printed, "Finishing first.\n")

    def test_the_handlers_of_the_run_come_back(self):
        interrupts = Interrupts()
        gentle = mock.Mock()  # as unittest's, installed since
        with interrupts.handled():
            during = signal.getsignal(signal.SIGTERM)
            previous = signal.signal(signal.SIGINT, gentle)
            try:
                with interrupts.deferred("Finishing first."):
                    self.assertIsNot(signal.getsignal(signal.SIGTERM), during)
                    self.assertIsNot(signal.getsignal(signal.SIGINT), gentle)
                self.assertIs(signal.getsignal(signal.SIGTERM), during)
                self.assertIs(signal.getsignal(signal.SIGINT), gentle)
            finally:
                signal.signal(signal.SIGINT, previous)

    def test_nothing_deferred_outside_handled(self):
        before = signal.getsignal(signal.SIGTERM)
        with Interrupts().deferred("Finishing first."):
            self.assertIs(signal.getsignal(signal.SIGTERM), before)
