"""The run's own database backend (DB_VENDOR), with features that mark
tests of the ``marks`` app, as a third-party backend's features mark
Django's own suite (applied when RUNNING_DJANGOS_TEST_SUITE is "true")."""

from importlib import import_module

from tests.dbconfig import vendor

_MODULES = {"sqlite": "sqlite3", "postgresql": "postgresql", "mysql": "mysql"}
_base = import_module(f"django.db.backends.{_MODULES[vendor()]}.base")


class DatabaseFeatures(_base.DatabaseWrapper.features_class):
    django_test_skips = {
        "the backend's features skip it": {
            "marks.tests.Marked.test_skipped_by_the_features",
        },
    }
    django_test_expected_failures = {
        "marks.tests.Marked.test_expected_to_fail_by_the_features",
    }


class DatabaseWrapper(_base.DatabaseWrapper):
    features_class = DatabaseFeatures
