"""``python -m tests.differential``: hunt for differences from DiscoverRunner.

    python -m tests.differential --suites 200 --seed 1
    python -m tests.differential --replay finding.json

Every discrepancy is printed with the generated suite and the seed, and the
suite is written as a replayable JSON file into --findings. The hunt goes on
after a finding (a long run reports all it found); the exit code is 1 if
anything was found.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import oracle, spec


def _check(case: spec.Case, findings: Path, label: str) -> bool:
    verdict = oracle.compare(case)
    if verdict.ok:
        return True
    findings.mkdir(parents=True, exist_ok=True)
    path = findings / f"{label}.json"
    spec.dump(case, path)
    print(f"\n##### FINDING {label} (replay: --replay {path})")
    print(spec.to_json(case))
    print(verdict.report(), flush=True)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.differential", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--suites", type=int, default=100, help="how many to generate")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "mysql"), default=None)
    parser.add_argument("--replay", type=Path, help="run one suite from a JSON file")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="start no suite after this many minutes (the run stops early)",
    )
    parser.add_argument(
        "--findings",
        type=Path,
        default=Path("differential-findings"),
        help="where failing suites are written (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.db:
        os.environ["DB_VENDOR"] = args.db
    if args.replay:
        case = spec.load(args.replay)
        verdict = oracle.compare(case)
        print(verdict.report() if not verdict.ok else "no discrepancy")
        return 0 if verdict.ok else 1

    from hypothesis import HealthCheck, Phase, given, reject, seed, settings

    from .strategies import cases

    counts = {"run": 0, "found": 0}
    seen: set[str] = set()
    started = time.monotonic()

    @seed(args.seed)
    @settings(
        max_examples=args.suites,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # each example is two runs: no shrinking
        suppress_health_check=list(HealthCheck),
    )
    @given(cases())
    def hunt(case: spec.Case) -> None:
        # Draws that differ only where it does not matter (a strategy for
        # a group nobody joins) give the same suite: run each suite once.
        key = spec.to_json(case)
        out_of_time = (
            args.minutes is not None and time.monotonic() - started > args.minutes * 60
        )
        if key in seen or out_of_time:
            reject()
        seen.add(key)
        counts["run"] += 1
        label = f"seed{args.seed}-suite{counts['run']}"
        if not _check(case, args.findings, label):
            counts["found"] += 1
        print(
            f"[{time.monotonic() - started:7.0f}s] seed {args.seed} suite "
            f"{counts['run']}: {case.count_tests()} tests, run {case.run}, "
            f"faults {case.faults()}, findings so far {counts['found']}",
            flush=True,
        )

    hunt()
    print(
        f"seed {args.seed}: {counts['run']} distinct suites, {counts['found']} with "
        f"discrepancies, {time.monotonic() - started:.0f}s"
    )
    return 1 if counts["found"] else 0


if __name__ == "__main__":
    sys.exit(main())
