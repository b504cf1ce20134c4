"""Errors the runner raises for bad input or bad flags."""

from django.core.management.base import CommandError


class ConfigurationError(CommandError):
    """Bad ``mp_group`` values or conflicting options, found before any test.

    A ``CommandError`` so that ``manage.py test`` prints it as one clean line;
    a ``runtests.py`` that calls the runner sees an ordinary exception.
    """
