"""The first concurrent call in a worker of a parallel run, against later ones.

    python bench/first_call.py --runs 5                 # SQLite
    DB_VENDOR=postgresql python bench/first_call.py --runs 5

Each run is ``manage.py test --parallel-groups 2`` of a project with two
``ConcurrentTestMixin`` classes, each timing, in its worker, its first
``call_concurrently(10, noop)`` and then five more. With forked workers
(the default) the first call finds the call server each worker forked as it
started; ``CONCURRENT_RUNNER_FORK_WORKERS = False`` (``--no-fork``) shows the
fresh interpreter it replaces. Prints min / median / max over every worker
of every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from suites import MANAGE, MIGRATION, MODELS, SETTINGS  # noqa: E402

TESTS = """
import json
import os
import time

from django.test import TransactionTestCase

from concurrent_runner import ConcurrentTestMixin


def noop():
    return None


def timed(test):
    start = time.perf_counter()
    test.call_concurrently(10, noop)
    return time.perf_counter() - start


class Calls:
    def test_calls(self):
        first = timed(self)
        later = [timed(self) for _ in range(5)]
        with open(os.environ["BENCH_OUT"], "a") as out:
            out.write(json.dumps({"first": first, "later": later}) + "\\n")


class CallsOne(Calls, ConcurrentTestMixin, TransactionTestCase):
    pass


class CallsTwo(Calls, ConcurrentTestMixin, TransactionTestCase):
    pass
"""


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-fork", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "first_call"
        app = project / "benchapp"
        (app / "migrations").mkdir(parents=True)
        settings = SETTINGS.format(name="first_call", repo=str(HERE.parent))
        settings += (
            "\nCONCURRENT_RUNNER_FORK_WORKERS = "
            "os.environ.get('BENCH_FORK', '1') == '1'\n"
        )
        (project / "settings.py").write_text(settings)
        (project / "manage.py").write_text(MANAGE)
        for name, text in {
            "__init__.py": "",
            "models.py": MODELS,
            "tests.py": TESTS,
            "migrations/__init__.py": "",
            "migrations/0001_initial.py": MIGRATION,
        }.items():
            (app / name).write_text(text)
        out = Path(tmp) / "times.jsonl"
        env = {
            **os.environ,
            "PYTHONPATH": str(HERE.parent),
            "BENCH_OUT": str(out),
            "BENCH_FORK": "0" if args.no_fork else "1",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # see parallel.py
        for _ in range(args.runs):
            done = subprocess.run(
                [sys.executable, "manage.py", "test", "--noinput", "-v", "0",
                 "--parallel-groups", "2"],
                cwd=project, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            if done.returncode:
                raise SystemExit(done.stdout + done.stderr)
        records = [json.loads(line) for line in out.read_text().splitlines()]
    first = [r["first"] for r in records]
    later = [statistics.median(r["later"]) for r in records]
    kind = "fresh interpreter (forking off)" if args.no_fork else "forked workers"
    print(
        f"{os.environ.get('DB_VENDOR', 'sqlite')}, {kind}, {len(records)} workers: "
        f"first call_concurrently(10, noop) {spread(first)}; "
        f"later (median of 5 per worker) {spread(later)}"
    )


if __name__ == "__main__":
    main()
