"""The second --keepdb run of suite (a): ours against Django's, interleaved.

    DB_VENDOR=postgresql python bench/keepdb.py --repeats 5
    python bench/keepdb.py --db postgresql,mysql --workers 4 --repeats 5

Times whole ``manage.py test`` commands, as a user runs them again after a
first run made the test databases: ours ``--parallel-groups N --keepdb``
(which keeps its clones and uses them again while they match) against
Django ``--parallel N --keepdb`` (which keeps its clones without checking
them). Each side has database names of its own (``DB_NAME_SUFFIX``), so
neither uses the other's clones; both are warmed by one --keepdb run, then
alternate; the databases are dropped at the end by a run without --keepdb.
Prints min / median / max of each and of the pairwise ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from parallel import DJANGO, timed  # noqa: E402
from suites import generate  # noqa: E402


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("DB_VENDOR", "postgresql"))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = str(args.workers)
    sides = {
        "ours": ["--parallel-groups", n],
        "django": [*DJANGO, "--parallel", n],
    }
    with tempfile.TemporaryDirectory() as tmp:
        project = generate(Path(tmp))["a"]
        for db in args.db.split(","):
            envs = {
                side: {
                    **os.environ,
                    "DB_VENDOR": db,
                    "PYTHONPATH": str(HERE.parent),
                    "DB_NAME_SUFFIX": os.environ.get("DB_NAME_SUFFIX", "")
                    + f"_keepdb_{side}",
                }
                for side in sides
            }
            for env in envs.values():
                env.pop("PYTHONDONTWRITEBYTECODE", None)  # see parallel.py
            walls: dict[str, list[float]] = {side: [] for side in sides}
            try:
                for side, cmd in sides.items():  # the first runs: not timed
                    timed(project, [*cmd, "--keepdb"], envs[side])
                for _ in range(args.repeats):
                    for side, cmd in sides.items():
                        wall, _ran = timed(project, [*cmd, "--keepdb"], envs[side])
                        walls[side].append(wall)
            finally:
                for side, cmd in sides.items():  # and drop every database
                    timed(project, cmd, envs[side])
            pairs = zip(walls["ours"], walls["django"], strict=True)
            ratios = [ours / django for ours, django in pairs]
            print(
                f"a {db:10} N={n} second --keepdb run, min / median / max: "
                f"ours {spread(walls['ours'])} s, Django {spread(walls['django'])} s, "
                f"ours/Django {spread(ratios)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
