import os
import signal
import time

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class FaultsConfig(AppConfig):
    name = "faults"

    def ready(self):
        # post_migrate is sent for apps with models, which this one has not.
        if os.environ.get("SWALLOWED_SIGTERM") == "1":
            post_migrate.connect(sigterm_inside_del)
        if os.environ.get("PAUSE_AFTER_MIGRATING"):
            post_migrate.connect(pause_after_migrating)
        if os.environ.get("PAUSE_DROPPING_CLONES"):
            pause_before_dropping_clones()
        if os.environ.get("PAUSE_DROPPING"):
            pause_before_the_first_drop()


class _Dying:
    def __del__(self):
        # The handler runs here, and Python only prints the KeyboardInterrupt
        # it raises ("Exception ignored in ..."), as when a Ctrl-C meets
        # Django 6's ModelState.__del__ during the migrations.
        signal.raise_signal(signal.SIGTERM)


_done = set()


def once_while_migrating(what, plan):
    """True the first time a migrate (not a flush: that passes no plan)
    sends post_migrate for ``what``."""
    if plan is None or what in _done:
        return False
    _done.add(what)
    return True


def sigterm_inside_del(plan=None, **kwargs):
    """SIGTERM to this process, swallowed, while it migrates."""
    if once_while_migrating("sigterm", plan):
        _Dying()


def pause_after_migrating(plan=None, **kwargs):
    """Hold the setup, so a test can signal it there and nowhere else."""
    if once_while_migrating("pause", plan):
        print("Paused after migrating.", flush=True)
        time.sleep(float(os.environ["PAUSE_AFTER_MIGRATING"]))


def pause_before_dropping_clones():
    """Hold the teardown before the clones are dropped, so a test can signal
    it there; the runner imports ``destroy_clones`` where it calls it."""
    from concurrent_runner.databases import clones

    destroy_clones = clones.destroy_clones

    def paused(*args, **kwargs):
        print("Dropping the clones slowly.", flush=True)
        time.sleep(float(os.environ["PAUSE_DROPPING_CLONES"]))
        return destroy_clones(*args, **kwargs)

    clones.destroy_clones = paused


def pause_before_the_first_drop():
    """Hold Django's first drop of a test database (a run in one process
    drops them with Django's own teardown)."""
    from django.db.backends.base.creation import BaseDatabaseCreation

    destroy_test_db = BaseDatabaseCreation.destroy_test_db

    def paused(self, *args, **kwargs):
        if "drop" not in _done:
            _done.add("drop")
            print("Dropping the test databases slowly.", flush=True)
            time.sleep(float(os.environ["PAUSE_DROPPING"]))
        return destroy_test_db(self, *args, **kwargs)

    BaseDatabaseCreation.destroy_test_db = paused
