"""``--junit-xml PATH``: one JUnit XML report for the whole run.

The layout is the one Jenkins, GitLab and GitHub test reporters read
(``testsuites`` > ``testsuite`` > ``testcase`` with ``failure``, ``error``,
``skipped``, ``system-out``, ``system-err``). A result mixin records each
test as the run's one result sees it, replayed from a worker or run
in-process, so both modes give the same report.
"""

from __future__ import annotations

import re
import socket
import sys
import time
import unittest
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Characters XML 1.0 cannot hold (ANSI colours often carry \x1b).
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass
class Problem:
    kind: str  # failure, error, skipped
    message: str
    type: str = ""
    text: str = ""


@dataclass
class Case:
    classname: str
    name: str
    time: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""


class JUnitReport:
    def __init__(self) -> None:
        self.cases: list[Case] = []
        self.started = datetime.now(timezone.utc)
        self.t0 = time.monotonic()

    def to_xml(self) -> str:
        counts = {"failure": 0, "error": 0, "skipped": 0}
        for case in self.cases:
            kinds = {p.kind for p in case.problems}
            for kind in ("error", "failure", "skipped"):
                if kind in kinds:
                    counts[kind] += 1
                    break
        elapsed = f"{time.monotonic() - self.t0:.3f}"
        totals = {
            "tests": str(len(self.cases)),
            "failures": str(counts["failure"]),
            "errors": str(counts["error"]),
            "skipped": str(counts["skipped"]),
            "time": elapsed,
        }
        root = ET.Element("testsuites", {"name": "django tests", **totals})
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "name": "django tests",
                **totals,
                "timestamp": self.started.isoformat(timespec="seconds"),
                "hostname": socket.gethostname(),
            },
        )
        for case in self.cases:
            element = ET.SubElement(
                suite,
                "testcase",
                {
                    "classname": case.classname,
                    "name": case.name,
                    "time": f"{case.time:.3f}",
                },
            )
            for problem in _one_per_kind(case.problems):
                attrs = {"message": _clean(problem.message)}
                if problem.type:
                    attrs["type"] = problem.type
                child = ET.SubElement(element, problem.kind, attrs)
                if problem.text:
                    child.text = _clean(problem.text)
            if case.stdout:
                ET.SubElement(element, "system-out").text = _clean(case.stdout)
            if case.stderr:
                ET.SubElement(element, "system-err").text = _clean(case.stderr)
        ET.indent(root)
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            + ET.tostring(root, encoding="unicode")
            + "\n"
        )

    def write(self, path: Path) -> None:
        path.write_text(self.to_xml(), encoding="utf-8")


def _one_per_kind(problems: list[Problem]) -> list[Problem]:
    """The schema allows one failure (or error) per test case: subtests that
    failed are joined into one, in order."""
    merged: dict[str, Problem] = {}
    for problem in problems:
        if problem.kind in merged:
            first = merged[problem.kind]
            first.text = f"{first.text}\n{problem.text}".strip()
        else:
            merged[problem.kind] = Problem(
                problem.kind, problem.message, problem.type, problem.text
            )
    order = ("error", "failure", "skipped")
    return [merged[k] for k in order if k in merged]


def _text(data: bytes) -> str:
    """A worker's output for the report: as this process's stdout decodes
    it, with what does not decode shown as ``\\xNN``."""
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    try:
        return data.decode(encoding, "backslashreplace")
    except LookupError:
        return data.decode("utf-8", "backslashreplace")


def _names(test: Any) -> tuple[str, str]:
    if isinstance(test, unittest.suite._ErrorHolder):  # type: ignore[attr-defined]
        # "setUpClass (module.Class)"
        match = re.match(r"(\w+) \((.+)\)$", test.description)
        return (match.group(2), match.group(1)) if match else (test.description, "")
    test = getattr(test, "test_case", test)  # a subtest's own test
    # From the id, so that doctests read "module" / "function" too.
    classname, _, name = test.id().rpartition(".")
    return classname, name


def _problem(kind: str, entry: tuple[Any, ...]) -> Problem:
    text = entry[1] if len(entry) > 1 else ""
    last = text.strip().splitlines()[-1] if text.strip() else kind
    type_, _, message = last.partition(": ")
    if not message:
        type_, message = "", last
    return Problem(kind, message, type_, text)


class JUnitRecording:
    """Mixed into the run's result class: a ``Case`` per test."""

    junit: JUnitReport

    _junit_case: Case | None = None

    def startTest(self, test: unittest.TestCase) -> None:
        self._junit_flush()
        super().startTest(test)  # type: ignore[misc]
        self._junit_begin(test)

    def _junit_begin(self, test: unittest.TestCase) -> Case:
        classname, name = _names(test)
        self._junit_case = Case(classname, name)
        self._junit_start = time.monotonic()
        self._junit_duration: float | None = None
        return self._junit_case

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        if self._junit_case is None:  # skipped without startTest (3.12+)
            self._junit_flush()
            self._junit_begin(test)
        super().addSkip(test, reason)  # type: ignore[misc]

    def replayed_record(self, test: Any, record: Any) -> None:
        """From replay: the worker's duration and captured output (what
        reached its fd 1 and 2, then what --buffer held)."""
        case = self._junit_case or self._junit_begin(test)
        self._junit_duration = record.duration
        case.stdout = _text(record.stdout) + record.buffered_stdout
        case.stderr = _text(record.stderr) + record.buffered_stderr

    def stopTest(self, test: unittest.TestCase) -> None:
        case = self._junit_case or self._junit_begin(test)
        if getattr(self, "buffer", False) and not (case.stdout or case.stderr):
            out = getattr(self, "_stdout_buffer", None)
            err = getattr(self, "_stderr_buffer", None)
            case.stdout = out.getvalue() if out is not None else ""
            case.stderr = err.getvalue() if err is not None else ""
        super().stopTest(test)  # type: ignore[misc]
        duration = self._junit_duration
        case.time = (
            duration if duration is not None else time.monotonic() - self._junit_start
        )
        self._junit_flush(case)
        self.junit.cases.append(case)
        self._junit_case = None

    def stopTestRun(self) -> None:
        self._junit_flush()
        super().stopTestRun()  # type: ignore[misc]

    def _junit_flush(self, case: Case | None = None) -> None:
        """Move what the result recorded since last time into the report:
        onto ``case``, or, for fixture errors (setUpClass...), into cases of
        their own."""
        seen = getattr(self, "_junit_seen", None) or dict.fromkeys(_LISTS, 0)
        for attr, kind in _LISTS.items():
            entries = getattr(self, attr)
            for entry in entries[seen[attr] :]:
                if attr == "expectedFailures":
                    continue  # a pass, as unittest counts it
                problem = (
                    Problem("failure", "unexpected success")
                    if attr == "unexpectedSuccesses"
                    else _problem(kind, entry if isinstance(entry, tuple) else (entry,))
                )
                if attr == "skipped":
                    problem = Problem("skipped", str(entry[1]))
                test = entry[0] if isinstance(entry, tuple) else entry
                if case is not None and not isinstance(
                    test,
                    unittest.suite._ErrorHolder,  # type: ignore[attr-defined]
                ):
                    case.problems.append(problem)
                else:
                    classname, name = _names(test)
                    self.junit.cases.append(Case(classname, name, problems=[problem]))
            seen[attr] = len(entries)
        self._junit_seen = seen


_LISTS = {
    "errors": "error",
    "failures": "failure",
    "skipped": "skipped",
    "expectedFailures": "passed",
    "unexpectedSuccesses": "failure",
}
