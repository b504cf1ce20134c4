"""Errors the runner raises for bad input or bad flags."""

from django.core.management.base import CommandError


class ConfigurationError(CommandError):
    """Bad ``mp_group`` values or conflicting options, found before any test.

    A ``CommandError`` so that ``manage.py test`` prints it as one clean line;
    a ``runtests.py`` that calls the runner sees an ordinary exception.
    """


class RunInterrupted(CommandError):
    """Ctrl-C or SIGTERM ended the run; raised once everything is cleaned up.

    Its exit code is the shell's for a process ended by that signal (130
    for SIGINT, 143 for SIGTERM), so that a script or CI job can tell an
    interrupted run from one whose tests failed (1).
    """

    def __init__(self, signal_name: str) -> None:
        import signal

        number = getattr(signal, signal_name, signal.SIGINT)
        super().__init__(
            f"The run was interrupted by {signal_name}.", returncode=128 + number
        )
        self.signal_name = signal_name
