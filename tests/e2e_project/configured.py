"""A runtests.py-style script: settings.configure(), then the runner, twice.

The first call runs one class in-process; the second runs the given labels
with --parallel-groups 2, so its workers must re-run this script and serve
only the second call, and end there: what follows the calls is the script's
own to run, once (each process that gets there writes a line to the file
named by CONFIGURED_AFTER).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import django  # noqa: E402
import e2e_settings  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    **{k: v for k, v in vars(e2e_settings).items() if k.isupper()},
)
django.setup()

from concurrent_runner import Runner  # noqa: E402

first = Runner(verbosity=1, interactive=False).run_tests(["outcomes.tests.Passing"])
second = Runner(verbosity=1, interactive=False, parallel_groups=2).run_tests(
    sys.argv[1:] or ["multidb"]
)
print(f"configured.py: first={first} second={second}")
if after := os.environ.get("CONFIGURED_AFTER"):
    with open(after, "a") as file:
        file.write(f"pid {os.getpid()}: first={first} second={second}\n")
sys.exit(1 if first or second else 0)
