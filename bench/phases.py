"""Where the fixed cost goes: the phases of one ``manage.py test`` command.

    python bench/phases.py --suite a --db sqlite --workers 4 --repeats 5

Runs a generated suite (see suites.py) with Django ``--parallel N`` and with
ours ``--parallel-groups N``, interleaved, and prints for each the median
time at which every phase of ``DiscoverRunner.run_tests`` started, counted
from the moment the command was launched, and when the process ended: what
a runner spends before its first test and after its last one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from parallel import run_test_command  # noqa: E402
from suites import generate  # noqa: E402

PHASES = (
    "setup_test_environment",
    "build_suite",
    "setup_databases",
    "run_checks",
    "run_suite",
    "teardown_databases",
    "teardown_test_environment",
)

# Run in the measured process: wrap each phase of the runner in use and
# print "phase start end" (seconds since launch) from the main process only.
PROBE = """
import os, runpy, sys, time
PHASES_LIST = os.environ["PHASES_LIST"].split()
T0 = float(os.environ["PHASES_T0"])
PID = os.getpid()
def probe():
    from django.test.runner import DiscoverRunner
    import concurrent_runner
    classes = [DiscoverRunner, concurrent_runner.Runner]
    for name in PHASES_LIST:
        for cls in classes:
            if name not in vars(cls):
                continue
            def wrap(func, name=name):
                depth = [0]
                def timed(*args, **kwargs):
                    depth[0] += 1
                    start = time.time()
                    try:
                        return func(*args, **kwargs)
                    finally:
                        depth[0] -= 1
                        if depth[0] == 0 and os.getpid() == PID:
                            print(f"PHASE {name} {start - T0:.4f} "
                                  f"{time.time() - T0:.4f}", file=sys.stderr)
                return timed
            setattr(cls, name, wrap(vars(cls)[name]))
import django.test.runner
probe()
sys.argv = ["manage.py", *sys.argv[1:]]
try:
    runpy.run_path("manage.py", run_name="__main__")
finally:
    print(f"PHASE exit {time.time() - T0:.4f} 0", file=sys.stderr)
"""


def measure(project: Path, args: list[str], env: dict[str, str]) -> dict[str, float]:
    start = time.time()
    probe_env = {**env, "PHASES_T0": repr(start), "PHASES_LIST": " ".join(PHASES)}
    done = run_test_command(project, ["-c", PROBE], args, probe_env)
    wall = time.time() - start
    marks = {"wall": wall}
    for line in done.stderr.splitlines():
        if line.startswith("PHASE "):
            _, name, begin, end = line.split()
            marks[name] = float(begin)
            if name == "run_suite":
                marks["run_suite_end"] = float(end)
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="a")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = str(args.workers)
    runs = {
        "django": [
            "--testrunner",
            "django.test.runner.DiscoverRunner",
            "--parallel",
            n,
        ],
        "ours": ["--parallel-groups", n],
    }
    if args.workers == 1:  # both in one process
        runs["django"] = runs["django"][:2]
    with tempfile.TemporaryDirectory() as tmp:
        project = generate(Path(tmp))[args.suite]
        env = {**os.environ, "DB_VENDOR": args.db, "PYTHONPATH": str(HERE.parent)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        measure(project, runs["ours"], env)  # record durations, compile
        samples: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for kind, cmd in runs.items():
                samples[kind].append(measure(project, cmd, env))
    names = [*PHASES, "run_suite_end", "exit", "wall"]
    print(f"suite {args.suite}, {args.db}, N={n}, medians of {args.repeats} (s)")
    print(f"{'phase starts at':28} {'django':>8} {'ours':>8} {'ours-django':>12}")
    for name in names:
        med = {
            kind: statistics.median(s[name] for s in samples[kind] if name in s)
            for kind in runs
            if any(name in s for s in samples[kind])
        }
        if len(med) == 2:
            diff = med["ours"] - med["django"]
            print(f"{name:28} {med['django']:8.3f} {med['ours']:8.3f} {diff:+12.3f}")


if __name__ == "__main__":
    main()
