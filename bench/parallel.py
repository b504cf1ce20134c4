"""Our runner against Django's, side by side, on four suite shapes.

    python bench/parallel.py                          # everything (long)
    python bench/parallel.py --suites ab --db sqlite --workers 4 --repeats 3

For each suite (see suites.py), database and N it times, interleaved and
repeated, whole ``manage.py test`` commands as a user runs them: serial
Django, Django ``--parallel N`` and ours with ``--parallel-groups N``, and
prints medians as ratios to Django ``--parallel N`` and to the ideal lower
bound: the fixed cost every runner pays (serial Django's wall time minus
its "Ran N tests in X s": start-up, discovery, databases, teardown) plus
``max(total / N, longest unit)`` from the --timeline data of an extra,
untimed run of ours (writing a timeline is not part of the timed runs).
Ours runs once before measuring, so its durations are recorded (a "second
run"). For suite d, Django runs the isolated part in a second, serial
command; its time is the sum.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from suites import generate  # noqa: E402

DJANGO = ["--testrunner", "django.test.runner.DiscoverRunner"]


def run_test_command(
    project: Path, program: list[str], args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python *program test --noinput -v 0 *args`` in ``project``; it must pass."""
    done = subprocess.run(
        [sys.executable, *program, "test", "--noinput", "-v", "0", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed in {project}:\n{done.stdout}{done.stderr}")
    return done


def timed(project: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time of the whole command, and of its tests ("Ran N tests in X")."""
    start = time.perf_counter()
    done = run_test_command(project, ["manage.py"], args, env)
    elapsed = time.perf_counter() - start
    ran = re.search(r"^Ran \d+ tests? in ([\d.]+)s", done.stderr, re.M)
    return elapsed, float(ran.group(1)) if ran else 0.0


def commands(suite: str, n: int, timeline: Path) -> dict[str, list[list[str]]]:
    if suite == "d":
        django_parallel = [
            [*DJANGO, "--parallel", str(n), "--exclude-tag", "isolated"],
            [*DJANGO, "--tag", "isolated"],
        ]
    else:
        django_parallel = [[*DJANGO, "--parallel", str(n)]]
    return {
        "serial": [DJANGO],
        "django": django_parallel,
        "ours": [["--parallel-groups", str(n)]],
        # Untimed: writing a timeline costs time a user's run does not pay.
        "bound": [["--parallel-groups", str(n), "--timeline", str(timeline)]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="abcde")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--workers", default="2,4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repo = HERE.parent
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        projects = generate(Path(tmp))
        timeline = Path(tmp) / "timeline.json"
        for db in args.db.split(","):
            env = {**os.environ, "DB_VENDOR": db, "PYTHONPATH": str(repo)}
            # Compiled once, as an installed package is: a shell that says
            # not to write bytecode would make every run compile our modules
            # (Django's own were compiled when pip installed it).
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            for suite in args.suites:
                project = projects[suite]
                for n in (int(w) for w in args.workers.split(",")):
                    runs = commands(suite, n, timeline)
                    for cmd in runs["ours"]:  # record durations first
                        timed(project, cmd, env)
                    walls: dict[str, list[float]] = {k: [] for k in runs}
                    bounds = []
                    for _ in range(args.repeats):
                        for kind, cmds in runs.items():
                            times = [timed(project, c, env) for c in cmds]
                            walls[kind].append(sum(wall for wall, _ in times))
                            if kind == "serial":
                                fixed = times[0][0] - times[0][1]
                            if kind == "bound":
                                summary = json.loads(timeline.read_text())["summary"]
                                bounds.append(fixed + summary["lower_bound"])
                    med = {k: statistics.median(v) for k, v in walls.items()}
                    bound = statistics.median(bounds)
                    rows.append((suite, db, n, med, bound))
                    print(
                        f"{suite} {db:10} N={n}  serial {med['serial']:6.2f}s  "
                        f"django {med['django']:6.2f}s  ours {med['ours']:6.2f}s  "
                        f"ours/django {med['ours'] / med['django']:.2f}  "
                        f"ours/bound {med['ours'] / bound:.2f} (bound {bound:.2f}s)",
                        flush=True,
                    )
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{args.repeats} repeats, medians of whole commands")  # fmt: skip


if __name__ == "__main__":
    main()
