"""``--failed`` and ``--failed-first``: what failed last time, run again.

The file (``.concurrent_runner_failed.json`` next to the durations file, or
``settings.CONCURRENT_RUNNER_FAILED_FILE``) holds the ids of the tests that
failed or errored, and the classes and modules whose fixtures did. Each run
updates it with what it ran: a test that passed leaves it, one that failed
joins it; what a run did not select stays as it was, as pytest's
``--last-failed`` cache does. Like the durations file it only steers: a
missing or corrupt file means "nothing recorded".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import unittest
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


def load(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return set()
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        return set()
    failed = data.get("failed")
    if not isinstance(failed, list):
        return set()
    return {item for item in failed if isinstance(item, str)}


def save(path: Path, failed: Iterable[str]) -> None:
    """Replace the file, atomically; a read-only checkout is not an error."""
    if os.path.exists(path) and not os.path.isfile(path):
        return  # os.devnull (the file turned off) or a directory
    payload = {"version": FORMAT_VERSION, "failed": sorted(set(failed))}
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def failed_in(result: unittest.TestResult) -> set[str]:
    """Ids that failed or errored in ``result``: a test's own id (also for a
    failed subtest), or the class or module of a fixture that failed."""
    failed = set()
    for test, _text in [*result.failures, *result.errors]:
        failed.add(_id(test))
    for test in result.unexpectedSuccesses:
        failed.add(_id(test))
    return failed


def _id(test: Any) -> str:
    if isinstance(test, unittest.suite._ErrorHolder):  # type: ignore[attr-defined]
        # "setUpClass (app.tests.Cls)" -> "app.tests.Cls"
        description = str(test.description)
        return description.partition(" (")[2].rstrip(")") or description
    inner = getattr(test, "test_case", None)  # a subtest
    return str((inner or test).id())


def names(tests: Iterable[Any]) -> set[str]:
    """The ids of ``tests`` and of their classes, as the file names them."""
    found = set()
    for test in tests:
        found.add(test.id())
        found.add(f"{type(test).__module__}.{type(test).__qualname__}")
    return found


def update(recorded: set[str], ran: set[str], result: unittest.TestResult) -> set[str]:
    """What the file holds after a run that ran ``ran`` (see ``names``)."""
    return (recorded - ran) | failed_in(result)


def matches(test: Any, failed: set[str]) -> bool:
    """Whether ``test`` is, or belongs to, something that failed."""
    cls = type(test)
    return bool(
        {test.id(), f"{cls.__module__}.{cls.__qualname__}", cls.__module__} & failed
    )


def select(
    tests: Sequence[Any], failed: set[str], *, first: bool
) -> tuple[list[Any], int]:
    """The tests to run and how many of them failed last time: only those
    (``first`` False), or those first, each part in its own order. With
    nothing recorded that matches, every test, in its order."""
    again = [t for t in tests if matches(t, failed)]
    if not again:
        return list(tests), 0
    if not first:
        return again, len(again)
    rest = [t for t in tests if not matches(t, failed)]
    return again + rest, len(again)
