"""When a test fails only in parallel: the way to reproduce it, and to find why.

A test that depends on what ran before it in the same process (a cache, a
module global, a row left behind) fails only when that test shares its
worker, and which tests share a worker changes from run to run. So a
parallel run records, per worker process, the order in which it ran tests
(``Sequences``, a run listener); for each failure it writes that worker's
sequence up to the failing test to a file, and the summary says how to run
it again in one process, in that order::

    python manage.py test ... --sequence .concurrent_runner_sequences/app.T.test.txt

``--sequence FILE`` runs exactly the tests the file lists, in its order, in
one process (labels, filters, sharding and ``--parallel-groups`` set
aside). ``--bisect FILE`` narrows the failure down to the earlier test that
causes it, as Django's own ``runtests.py --bisect`` does: it runs halves of
the tests before the failing one, each followed by it, in fresh processes,
and keeps the half that still makes it fail.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .parallel import protocol as p
from .parallel.controller import RunListener

#: The most failures the summary names a sequence file for.
SHOWN = 5


class Sequences(RunListener):
    """Which tests each worker process ran, in order, and where it failed."""

    def __init__(
        self,
        test_ids: Sequence[str],
        directory: Path | None = None,
        result: Any = None,
    ) -> None:
        self.test_ids = test_ids
        #: Where the files go (None: nowhere), and the result whose summary
        #: says how to use them (``reproduce_hints``).
        self.directory = directory
        self.result = result
        self._current: dict[int, list[int]] = {}  # slot -> its worker's tests
        #: (failing test, the tests its worker ran up to and with it)
        self.failures: list[tuple[str, list[str]]] = []

    def worker_starting(self, slot: int) -> None:
        self._current[slot] = []  # a new process: what ran before is gone

    def test_done(self, slot: int, record: p.TestRecord) -> None:
        self._ran(slot, record.index, record.failed)

    def test_errored(self, slot: int, index: int) -> None:
        self._ran(slot, index, failed=True)

    def _ran(self, slot: int, index: int, failed: bool) -> None:
        ran = self._current.setdefault(slot, [])
        ran.append(index)
        if failed:
            self.failures.append(
                (self.test_ids[index], [self.test_ids[i] for i in ran])
            )

    def run_ended(self) -> None:
        if self.failures and self.directory is not None and self.result is not None:
            self.result.reproduce_hints = hints(self.write(self.directory))

    def write(self, directory: Path) -> list[tuple[str, Path]]:
        """A file per failure (only those a test ran before on its worker);
        the directory holds this run's files only."""
        written = []
        with contextlib.suppress(OSError):
            directory.mkdir(exist_ok=True)
            for old in directory.glob("*.txt"):
                old.unlink()
        for test_id, ran in self.failures:
            if len(ran) < 2:
                continue  # first on its worker: nothing ran before it
            path = directory / f"{test_id}.txt"
            try:
                write_sequence(path, ran)
            except OSError:
                continue
            written.append((test_id, path))
        return written


def write_sequence(path: Path, test_ids: Sequence[str]) -> None:
    path.write_text(
        "# Tests in the order one worker ran them; the last one failed.\n"
        + "".join(f"{test_id}\n" for test_id in test_ids)
    )


def read_sequence(path: Path) -> list[str]:
    """The test ids a sequence file lists, in order."""
    lines = Path(path).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def command_with(option: str, path: Path, argv: Sequence[str] | None = None) -> str:
    """The command that started this run, with ``option path`` added (it
    sets labels, filters and the number of workers aside)."""
    argv = list(sys.orig_argv if argv is None else argv)
    argv = without_option(argv, ("--sequence", "--bisect"))
    return shlex.join([*argv, option, str(path)])


def without_option(argv: list[str], options: Sequence[str]) -> list[str]:
    """``argv`` without any of ``options`` and their values."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in options:
            skip = True
            continue
        if any(arg.startswith(f"{option}=") for option in options):
            continue
        kept.append(arg)
    return kept


def hints(written: list[tuple[str, Path]]) -> list[str]:
    """What the summary says about the sequence files."""
    if not written:
        return []
    lines = [
        "To rerun a failure after the tests that ran before it on its worker, "
        "in one process and in that order:"
    ]
    for _test_id, path in written[:SHOWN]:
        lines.append(f"  {command_with('--sequence', path)}")
    if len(written) > SHOWN:
        lines.append(f"  ... and {len(written) - SHOWN} more in {written[0][1].parent}")
    lines.append(
        "With --bisect instead of --sequence, the earlier test that makes it "
        "fail is looked for."
    )
    return lines


# -- --bisect -------------------------------------------------------------


@dataclass
class Bisection:
    """What ``bisect`` found: ``culprits`` run before ``failing`` make it fail
    (one test, at best); ``verdict`` says it in a sentence."""

    failing: str
    culprits: list[str]
    verdict: str


def bisect(
    sequence: list[str],
    fails: Callable[[list[str]], bool],
    say: Callable[[str], None] = lambda line: None,
) -> Bisection:
    """Narrow down which of the tests before the last one make it fail.

    ``fails(tests)`` runs ``tests`` in order, in a fresh process, and says
    whether the last one failed. As Django's ``runtests.py --bisect``: keep
    the half that still makes it fail, until one test is left.
    """
    *before, failing = sequence
    if fails([failing]):
        return Bisection(failing, [], f"{failing} fails on its own as well.")
    if not fails(sequence):
        return Bisection(
            failing, before, f"{failing} passed after the whole sequence this time."
        )
    candidates = before
    step = 1
    while len(candidates) > 1:
        half = len(candidates) // 2
        first, second = candidates[:half], candidates[half:]
        say(
            f"Step {step}: {len(candidates)} candidates, trying "
            f"{len(first)} + {len(second)}."
        )
        step += 1
        if fails([*first, failing]):
            candidates = first
        elif fails([*second, failing]):
            candidates = second
        else:
            return Bisection(
                failing,
                candidates,
                f"{failing} fails only after tests from both halves of "
                f"{len(candidates)} candidates; run them with --sequence.",
            )
    return Bisection(
        failing,
        candidates,
        f"{failing} fails when {candidates[0]} runs before it, and passes alone.",
    )


def run_in_order(argv: Sequence[str], tests: list[str], directory: Path) -> bool:
    """Whether the last of ``tests`` fails when they run in one process, in
    that order (a fresh ``argv --sequence FILE``)."""
    sequence = directory / "bisect.txt"
    report = directory / "bisect.xml"
    write_sequence(sequence, tests)
    report.unlink(missing_ok=True)
    command = [
        *without_option(list(argv), ("--sequence", "--bisect", "--junit-xml")),
        "--sequence",
        str(sequence),
        "--junit-xml",
        str(report),
        "--verbosity",
        "0",
    ]
    done = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "CONCURRENT_RUNNER_WORKER"},
        check=False,
    )
    if not report.exists():
        from .errors import ConfigurationError

        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ConfigurationError(
            f"--bisect could not run the tests ({shlex.join(command)}); it "
            f"exited with code {done.returncode}:\n{tail}"
        )
    return failed_in_report(report, tests[-1])


def failed_in_report(report: Path, test_id: str) -> bool:
    """Whether ``test_id`` failed or errored in a JUnit XML report (one that
    did not run, a fixture of its class having failed, counts as failed)."""
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return True
    classname, _, name = test_id.rpartition(".")
    for case in root.iter("testcase"):
        if case.get("classname") == classname and case.get("name") == name:
            return case.find("failure") is not None or case.find("error") is not None
    return True  # not run at all: an error before it (a fixture)


def bisect_command(path: Path, say: Callable[[str], None]) -> Bisection:
    """``--bisect FILE``: bisect the sequence in FILE with fresh runs of the
    command that started this process."""
    sequence = read_sequence(path)
    if len(sequence) < 2:
        from .errors import ConfigurationError

        raise ConfigurationError(
            f"{path} lists {len(sequence)} test(s); --bisect needs the failing "
            f"test last and at least one test before it."
        )
    with tempfile.TemporaryDirectory(prefix="concurrent-runner-bisect-") as tmp:
        argv = list(sys.orig_argv)
        return bisect(sequence, lambda tests: run_in_order(argv, tests, Path(tmp)), say)


def load_sequence_suite(loader: Any, path: Path) -> list[Any]:
    """The tests ``path`` lists, loaded one by one, in its order."""
    import unittest

    tests: list[Any] = []
    for test_id in read_sequence(path):
        suite = loader.loadTestsFromName(test_id)
        tests.extend(
            _flatten(suite) if isinstance(suite, unittest.TestSuite) else [suite]
        )
    return tests


def _flatten(suite: Any) -> list[Any]:
    import unittest

    found = []
    for test in suite:
        found.extend(_flatten(test) if isinstance(test, unittest.TestSuite) else [test])
    return found
