import os
import signal

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class FaultsConfig(AppConfig):
    name = "faults"

    def ready(self):
        if os.environ.get("SWALLOWED_SIGTERM") == "1":
            # Sent for apps with models, which this one has not.
            post_migrate.connect(sigterm_inside_del)


class _Dying:
    def __del__(self):
        # The handler runs here, and Python only prints the KeyboardInterrupt
        # it raises ("Exception ignored in ..."), as when a Ctrl-C meets
        # Django 6's ModelState.__del__ during the migrations.
        signal.raise_signal(signal.SIGTERM)


_sent = []


def sigterm_inside_del(plan=None, **kwargs):
    """SIGTERM to this process, swallowed, once while it migrates (not when
    a flush emits post_migrate: that passes no plan)."""
    if plan is not None and not _sent:
        _sent.append(True)
        _Dying()
