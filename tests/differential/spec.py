"""Dataclasses describing a generated suite and how to run it.

A :class:`Case` is all that is needed to replay a finding: it is written to
and read from JSON (:func:`dump`, :func:`load`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: What a test does after its output and database check.
OUTCOMES = ("pass", "fail", "error", "skip", "skip_in_body", "xfail", "xpass")
#: What a subtest does.
SUBTEST_OUTCOMES = ("pass", "fail", "error", "skip")
#: What a class or module fixture does (besides a fault).
FIXTURE_OUTCOMES = ("ok", "error", "skip")
#: Ways a process dies or hangs: serial Django would die there.
FAULTS = ("exit", "kill", "segfault", "hang")
#: Ways a test or fixture writes to stdout (or stderr).
OUTPUTS = ("print", "buffer", "oswrite", "subprocess", "badbytes", "stderr")
KINDS = ("TestCase", "TransactionTestCase", "SimpleTestCase")
STRATEGIES = ("free", "serial", "isolated_free", "isolated_serial")
FIXTURES = ("setUpModule", "tearDownModule", "setUpClass", "tearDownClass")


@dataclass
class TestSpec:
    name: str
    outcome: str = "pass"  # one of OUTCOMES, or "subtests"
    subtests: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    fault: str | None = None  # one of FAULTS: replaces the outcome


@dataclass
class ClassSpec:
    name: str
    kind: str  # one of KINDS
    tests: list[TestSpec]
    #: None, "group", or ["group", "strategy"] (a list: JSON has no tuples).
    mp_group: str | list[str] | None = None
    #: fixture name -> one of FIXTURE_OUTCOMES or "fault:<kind>"
    fixtures: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)  # in setUpClass


@dataclass
class ModuleSpec:
    name: str
    classes: list[ClassSpec]
    fixtures: dict[str, str] = field(default_factory=dict)


@dataclass
class RunSpec:
    """How our runner is run (DiscoverRunner gets the options it has)."""

    workers: int = 2
    fork: bool = True
    shuffle: int | None = None
    reverse: bool = False
    k: str | None = None
    failfast: bool = False
    group_timeout: float | None = None


@dataclass
class Case:
    modules: list[ModuleSpec]
    run: RunSpec = field(default_factory=RunSpec)

    # -- what the suite holds ------------------------------------------------

    def faults(self) -> list[tuple[str, str]]:
        """(where, kind) of each place the suite kills or hangs its process;
        where is "module.Class.test", "module.Class.setUpClass" or
        "module.setUpModule"."""
        found = []
        for module in self.modules:
            for where, what in module.fixtures.items():
                if what.startswith("fault:"):
                    found.append((f"{module.name}.{where}", what[6:]))
            for cls in module.classes:
                for where, what in cls.fixtures.items():
                    if what.startswith("fault:"):
                        found.append((f"{module.name}.{cls.name}.{where}", what[6:]))
                for test in cls.tests:
                    if test.fault:
                        found.append(
                            (f"{module.name}.{cls.name}.{test.name}", test.fault)
                        )
        return found

    def count_tests(self) -> int:
        return sum(len(c.tests) for m in self.modules for c in m.classes)


def to_json(case: Case) -> str:
    return json.dumps(asdict(case), indent=1, sort_keys=True)


def from_dict(data: dict[str, Any]) -> Case:
    modules = [
        ModuleSpec(
            name=m["name"],
            fixtures=dict(m.get("fixtures", {})),
            classes=[
                ClassSpec(
                    name=c["name"],
                    kind=c["kind"],
                    mp_group=c.get("mp_group"),
                    fixtures=dict(c.get("fixtures", {})),
                    output=list(c.get("output", [])),
                    tests=[TestSpec(**t) for t in c["tests"]],
                )
                for c in m["classes"]
            ],
        )
        for m in data["modules"]
    ]
    return Case(modules=modules, run=RunSpec(**data.get("run", {})))


def dump(case: Case, path: Path) -> None:
    path.write_text(to_json(case) + "\n")


def load(path: Path) -> Case:
    return from_dict(json.loads(path.read_text()))
