"""Concurrent calls: our helper against the ancestor's way, in one run.

    python bench/calls.py                   # SQLite
    DB_VENDOR=postgresql python bench/calls.py --tries 20

For n = 1, 5, 10 it times ``call_concurrently(n, noop)`` on first use (a
call server to start) and later uses (median of repeats), the spread of the
calls' start times, and how often a read-modify-write race with a 1 ms
window is caught (an update lost) in ``--tries`` tries. The baseline starts
one fresh process per call from a thread pool, with no start barrier, as
django-concurrent-test-helper does. Both run against the same test database
of the example project, side by side.
"""

from __future__ import annotations

import argparse
import base64
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLE = ROOT / "example_project"


def noop() -> None:
    return None


# -- the baseline: a fresh interpreter per call, no barrier ------------------


def ancestor_calls(n: int, path: str, **kwargs) -> tuple[list, list[float]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT), str(HERE)]),
        "BENCH_TEST_DB": str(_test_db_name()),
    }
    argv = [
        sys.executable,
        str(HERE / "ancestor_call.py"),
        path,
        base64.b64encode(pickle.dumps(kwargs)).decode(),
    ]

    def one(_: int):
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode:
            raise RuntimeError(done.stderr)
        return pickle.loads(base64.b64decode(done.stdout))

    with ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(one, range(n)))
    return [o[0] for o in outcomes], [o[1] for o in outcomes]


def _test_db_name() -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


# -- measurements -------------------------------------------------------------


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def spread_ms(starts: list[float]) -> float:
    return (max(starts) - min(starts)) * 1000


def ours_noop(n: int, repeats: int) -> dict[str, float]:
    from concurrent_runner.calls import concurrent as calls

    if calls._current is not None:
        calls._current.stop()
        calls._current = None
    first = timed(lambda: calls.call_concurrently(n, "bench.calls:noop"))
    later, spreads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results = calls.call_concurrently(n, "bench.calls:noop")
        later.append(time.perf_counter() - start)
        spreads.append(results.spread * 1000)
    return {
        "first": first,
        "later": statistics.median(later),
        "spread": statistics.median(spreads),
    }


def ancestor_noop(n: int, repeats: int) -> dict[str, float]:
    times, spreads = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        _, starts = ancestor_calls(n, "bench.calls:noop")
        times.append(time.perf_counter() - start)
        spreads.append(spread_ms(starts))
    # No server to warm up: every use is a first use.
    return {
        "first": times[0],
        "later": statistics.median(times[1:]),
        "spread": statistics.median(spreads),
    }


def race_caught(make_calls, n: int, tries: int) -> int:
    from shop.models import Counter

    caught = 0
    for _ in range(tries):
        Counter.objects.update_or_create(name="race", defaults={"value": 0})
        make_calls(n)
        if Counter.objects.get(name="race").value < n:
            caught += 1
    return caught


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--race-calls",
        default="2,10",
        help="comma-separated numbers of concurrent calls for the race (2,10)",
    )
    args = parser.parse_args()

    sys.path[:0] = [str(EXAMPLE), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    import django

    django.setup()
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    from concurrent_runner import call_concurrently

    with tempfile.TemporaryDirectory() as tmp:
        for alias in connections:
            test = connections[alias].settings_dict.setdefault("TEST", {})
            if connections[alias].vendor == "sqlite" and not test.get("NAME"):
                test["NAME"] = str(Path(tmp) / f"bench_{alias}.sqlite3")
        old = setup_databases(verbosity=0, interactive=False)
        try:
            vendor = connections["default"].vendor
            print(f"Concurrent calls on {vendor}, {os.cpu_count()} CPUs, "
                  f"Python {sys.version.split()[0]}")  # fmt: skip
            print()
            print(f"{'n':>3} {'':9} {'first use':>10} {'later use':>10} "
                  f"{'start spread':>13}")  # fmt: skip
            rows = []
            for n in (1, 5, 10):
                ours = ours_noop(n, args.repeats)
                base = ancestor_noop(n, args.repeats)
                rows.append((n, ours, base))
                for label, m in (("ours", ours), ("ancestor", base)):
                    print(f"{n:>3} {label:9} {m['first']:>9.3f}s {m['later']:>9.3f}s "
                          f"{m['spread']:>11.1f}ms")  # fmt: skip
            print()
            ratios = (f"n={n}: {b['later'] / o['later']:.1f}x" for n, o, b in rows)
            print("ratio ancestor / ours (later use): " + ", ".join(ratios))
            window = 0.001
            kwargs = {"name": "race", "window": window}
            print()
            for n in (int(k) for k in args.race_calls.split(",")):
                ours_caught = race_caught(
                    lambda k: call_concurrently(
                        k, "shop.services:increment_counter", **kwargs
                    ),
                    n,
                    args.tries,
                )
                base_caught = race_caught(
                    lambda k: ancestor_calls(
                        k, "shop.services:increment_counter", **kwargs
                    ),
                    n,
                    args.tries,
                )
                print(
                    f"read-modify-write race, {n} calls, {window * 1000:g} ms window, "
                    f"lost update caught in: ours {ours_caught}/{args.tries}, "
                    f"ancestor {base_caught}/{args.tries}"
                )
        finally:
            teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()
