#!/usr/bin/env python
"""Run django-concurrent-runner's own tests.

    python runtests.py                         # all tests, SQLite
    DB_VENDOR=postgresql python runtests.py    # against PostgreSQL (or mysql)
    python runtests.py tests.test_planning -v 2 --parallel-groups 1

It configures settings itself and runs ``concurrent_runner.Runner``, so it is
also the "runtests.py" way of using the runner. Extra flags are the runner's.
It runs on 4 workers unless told otherwise: most of our end-to-end tests wait
on suites running in subprocesses, so even 2 cores keep 4 of them busy.
Durations go to .concurrent_runner_durations.json, for the next run's plan.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, str(HERE))
    import django
    from django.conf import settings

    from tests.dbconfig import database

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
        CONCURRENT_RUNNER_DURATIONS_FILE=HERE / ".concurrent_runner_durations.json",
    )
    django.setup()

    from concurrent_runner import Runner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("labels", nargs="*", default=["tests"])
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    Runner.add_arguments(parser)
    parser.set_defaults(parallel_groups=4)
    options = vars(parser.parse_args())
    labels = options.pop("labels")
    failures = Runner(**options).run_tests(labels)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
