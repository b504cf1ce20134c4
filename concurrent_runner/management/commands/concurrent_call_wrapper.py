"""``manage.py concurrent_call_wrapper --serve``: the concurrent call server.

Started by ``call_concurrently`` / ``make_concurrent_calls`` with a control
channel it inherits (its fd in ``CONCURRENT_RUNNER_CALL_SERVER``); function,
arguments and results travel over that channel and over pipes as dill, never
through argv or files. Not meant to be run by hand.
"""

import os

from django.core.management.base import BaseCommand, CommandError

from concurrent_runner.calls.server import SERVER_ENV, serve_from_environ


class Command(BaseCommand):
    help = (
        "Serve concurrent calls for concurrent_runner.call_concurrently(). "
        "Started by the library, with a private control channel."
    )
    requires_system_checks: list[str] = []  # start fast; the caller ran them

    def add_arguments(self, parser):
        parser.add_argument(
            "--serve",
            action="store_true",
            help="Serve batches of calls over the inherited control channel.",
        )

    def handle(self, *args, serve=False, **options):
        if not serve or not os.environ.get(SERVER_ENV):
            raise CommandError(
                "concurrent_call_wrapper is started by call_concurrently() with a "
                f"control channel in {SERVER_ENV}; it is not meant to be run by hand."
            )
        serve_from_environ()
