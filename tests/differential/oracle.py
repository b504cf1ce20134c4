"""Compare our runner's report with DiscoverRunner's.

Without faults both run the same project and must agree on the multiset of
(test id, status) pairs, the ``Ran N`` count, the final line and the exit
code. With faults (where serial Django would die) DiscoverRunner runs the
oracle project, in which each fault is an exception: ours must report an
error for exactly the affected test or fixture, and everything else as
DiscoverRunner does. With --failfast, what ours reports is compared with
a full DiscoverRunner run: no test after the first failure is reported as
passed, and nothing is reported that the full run did not.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from . import project, running
from .spec import Case

PASSED = {"ok", "expected failure", "unexpected success"}
MODULE_FIXTURES = (".setUpModule", ".tearDownModule")


def once_per_module(statuses: Counter) -> tuple[Counter, Counter]:
    """Module fixture outcomes counted once, and the extra reports dropped
    (as the final line's keyword -> how many).

    Serial Django runs a module's fixtures again each time its classes come
    back after another module's (--reverse and --shuffle interleave them),
    and reports each time; ours reports each module fixture's outcome once.
    """
    kept: Counter = Counter()
    extra: Counter = Counter()
    for (test, status), count in statuses.items():
        if test.endswith(MODULE_FIXTURES) and count > 1:
            keyword = {"ERROR": "errors", "FAIL": "failures"}.get(status, "skipped")
            extra[keyword] += count - 1
            count = 1
        kept[(test, status)] = count
    return kept, extra


def final_counts(final: str, minus: Counter) -> tuple[str, dict[str, int]]:
    """'FAILED (errors=3)' as ('FAILED', {'errors': 3}), less ``minus``."""
    word, _, rest = final.partition(" ")
    counts: dict[str, int] = {}
    for item in rest.strip("()").split(", "):
        if "=" in item:
            key, value = item.split("=")
            counts[key] = int(value) - minus.get(key, 0)
    return word, {k: v for k, v in counts.items() if v}


FAILED = {"FAIL", "ERROR"}
#: What stops a --failfast run: unittest's failfast also stops at an
#: unexpected success.
STOPS = FAILED | {"unexpected success"}
TEARDOWNS = (".tearDownClass", ".tearDownModule")


@dataclass
class Verdict:
    case: Case
    problems: list[str]
    theirs: running.Outcome
    ours: running.Outcome

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        lines = ["Discrepancies:", *(f"  - {p}" for p in self.problems)]
        lines += ["", "=== DiscoverRunner ===", self.theirs.describe()]
        lines += ["", "=== ours ===", self.ours.describe()]
        return "\n".join(lines)


def _status_difference(theirs: Counter, ours: Counter) -> list[str]:
    problems = []
    for pair in sorted(set(theirs) | set(ours)):
        if theirs[pair] != ours[pair]:
            problems.append(
                f"{pair[0]} {pair[1]!r}: DiscoverRunner {theirs[pair]}x, "
                f"ours {ours[pair]}x"
            )
    return problems


def _common(outcome: running.Outcome, who: str) -> list[str]:
    problems = []
    if outcome.timed_out:
        problems.append(f"{who}: did not finish within {running.RUN_TIMEOUT}s")
    if outcome.leftovers:
        problems.append(f"{who}: left {outcome.leftovers}")
    if outcome.ran is None:
        problems.append(f"{who}: no 'Ran N tests' line")
    if "Traceback" in outcome.stderr.split("\nRan ")[-1]:
        problems.append(f"{who}: a traceback after the summary")
    return problems


def compare(case: Case, work: Path | None = None) -> Verdict:
    """Run the case under both runners and list what differs."""
    where = Path(tempfile.mkdtemp(prefix="diff-project-", dir=work))
    try:
        faulty = bool(case.faults())
        ours_dir = project.write(case, where / "ours")
        # DiscoverRunner runs the oracle project (faults as exceptions) when
        # there are faults; else the very same project.
        theirs_dir = (
            project.write(case, where / "theirs", oracle=True) if faulty else ours_dir
        )
        full = replace(case.run, failfast=False)
        theirs = running.run(theirs_dir, full, ours=False)
        ours = running.run(ours_dir, case.run, ours=True)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    problems = _common(theirs, "DiscoverRunner") + _common(ours, "ours")
    problems += _output(theirs, ours, exact=not faulty and not case.run.failfast)
    if case.run.failfast:
        problems += _failfast(theirs, ours)
    else:
        their_statuses, their_extra = once_per_module(theirs.statuses)
        our_statuses, our_extra = once_per_module(ours.statuses)
        problems += _status_difference(their_statuses, our_statuses)
        if theirs.ran != ours.ran:
            problems.append(
                f"Ran {theirs.ran} (DiscoverRunner) != Ran {ours.ran} (ours)"
            )
        if final_counts(theirs.final, their_extra) != final_counts(
            ours.final, our_extra
        ):
            problems.append(
                f"final line {theirs.final!r} (DiscoverRunner) != {ours.final!r} (ours)"
            )
        if theirs.returncode != ours.returncode:
            problems.append(
                f"exit code {theirs.returncode} (DiscoverRunner) != "
                f"{ours.returncode} (ours)"
            )
    return Verdict(case, problems, theirs, ours)


def _output(theirs: running.Outcome, ours: running.Outcome, exact: bool) -> list[str]:
    """What tests printed is all there, once. ``exact=False`` (faults, or
    --failfast): ours may show a fixture's output again (a replacement
    worker runs it again) and show less after a stop."""
    if exact:
        if theirs.printed == ours.printed:
            return []
        lost = sorted(theirs.printed - ours.printed)
        extra = sorted(ours.printed - theirs.printed)
        return [f"printed output: lost {lost}, extra {extra}"]
    unknown = sorted(set(ours.printed) - set(theirs.printed))
    return [f"printed output nobody printed: {unknown}"] if unknown else []


def _failfast_would_run(sequence: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The full run's status lines less those --failfast never gets to in
    the test itself: unittest ends a test at the first subtest that did not
    succeed, and a skip counts (3.10 to 3.13, serially too), so a subtest
    failure after a skipped subtest never happens."""
    ended: set[str] = set()
    kept = []
    for key, status in sequence:
        test, subtest, _params = key.partition(" (")
        if test in ended:
            continue
        kept.append((key, status))
        if subtest and status.startswith("skipped"):
            ended.add(test)
    return kept


def _failfast(full: running.Outcome, ours: running.Outcome) -> list[str]:
    problems = []
    sequence = _failfast_would_run(full.sequence)
    statuses = Counter(sequence)
    failed = any(status in STOPS for _, status in sequence)
    expected_code = 1 if failed else 0
    if ours.returncode != expected_code:
        problems.append(
            f"--failfast: exit code {ours.returncode}, expected {expected_code}"
        )
    if not failed:
        # Nothing fails: failfast changes nothing.
        problems += _status_difference(
            once_per_module(statuses)[0], once_per_module(ours.statuses)[0]
        )
        return problems
    # A class or module teardown runs when unittest has already moved on to
    # the next test, which still runs after the teardown's error (serially
    # too): the stop counts from the first other failure.
    first = next(
        (
            i
            for i, (test, status) in enumerate(ours.sequence)
            if status in STOPS and not test.endswith(TEARDOWNS)
        ),
        None,
    )
    if first is None:
        if not any(status in STOPS for _, status in ours.sequence):
            problems.append("--failfast: ours reported no failure")
    else:
        later = [t for t, s in ours.sequence[first + 1 :] if s in PASSED]
        if later:
            problems.append(f"--failfast: passed after the first failure: {later}")
    extra = +(ours.statuses - statuses)
    if extra:
        problems.append(
            f"--failfast: reported what the full run did not: {sorted(extra)}"
        )
    return problems
