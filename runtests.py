#!/usr/bin/env python
"""Run django-concurrent-runner's own tests.

    python runtests.py                         # all tests, SQLite
    python runtests.py --fast                  # in-process tests only, ~10 s
    python runtests.py --e2e                   # end-to-end tests only
    DB_VENDOR=postgresql python runtests.py    # against PostgreSQL (or mysql)
    python runtests.py --exclude-tag any_database   # what differs by vendor
    python runtests.py tests.test_planning -v 2 --parallel-groups 1

It configures settings itself and runs ``concurrent_runner.Runner``, so it is
also the "runtests.py" way of using the runner. Extra flags are the runner's
(Django's --tag / --exclude-tag included). End-to-end classes whose checks do
not depend on the database vendor carry ``@tag("any_database")``.
It runs on 4 workers unless told otherwise: most of our end-to-end tests wait
on suites running in subprocesses, so even 2 cores keep 4 of them busy.
Durations go to .concurrent_runner_durations.json (not tracked), which starts
as a copy of tests/durations.json, so that a fresh clone's first run is
planned; refresh that file by copying the local one over it.
"""

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE / "tests"
DURATIONS = HERE / ".concurrent_runner_durations.json"
CHECKED_IN_DURATIONS = TESTS / "durations.json"


def modules(e2e: bool) -> list[str]:
    """The end-to-end test modules (which run suites in subprocesses), or
    the others."""
    return sorted(
        f"tests.{path.stem}"
        for path in TESTS.glob("test_*.py")
        if ("e2e" in path.stem) == e2e
    )


def main() -> int:
    sys.path.insert(0, str(HERE))
    import django
    from django.conf import settings

    from tests.dbconfig import database

    if not DURATIONS.exists() and CHECKED_IN_DURATIONS.is_file():
        # Runs record into the copy: the tracked file changes only on purpose.
        shutil.copyfile(CHECKED_IN_DURATIONS, DURATIONS)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="runtests",
        USE_TZ=True,
        DATABASES={"default": database("concurrent_runner")},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "concurrent_runner",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        CONCURRENT_RUNNER_DURATIONS_FILE=DURATIONS,
    )
    django.setup()

    from concurrent_runner import Runner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("labels", nargs="*")
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    layer = parser.add_mutually_exclusive_group()
    layer.add_argument(
        "--fast",
        action="store_true",
        help="Only the in-process tests: the modules without 'e2e' in their "
        "name, without the differential test.",
    )
    layer.add_argument(
        "--e2e", action="store_true", help="Only the end-to-end test modules."
    )
    Runner.add_arguments(parser)
    parser.set_defaults(parallel_groups=4)
    options = vars(parser.parse_args())
    labels = options.pop("labels")
    fast, e2e = options.pop("fast"), options.pop("e2e")
    if (fast or e2e) and labels:
        parser.error("--fast and --e2e choose the tests; give no labels with them")
    if fast or e2e:
        labels = modules(e2e)
    if fast:
        options["exclude_tags"] = [*(options["exclude_tags"] or []), "differential"]
    failures = Runner(**options).run_tests(labels or ["tests"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
