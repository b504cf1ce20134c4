"""Hypothesis strategies that generate a :class:`~.spec.Case`."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .spec import (
    FAULTS,
    FIXTURE_OUTCOMES,
    KINDS,
    OUTCOMES,
    OUTPUTS,
    STRATEGIES,
    SUBTEST_OUTCOMES,
    Case,
    ClassSpec,
    ModuleSpec,
    RunSpec,
    TestSpec,
)

#: Test names start with one of these, so that -k can pick some of them.
WORDS = ("alpha", "beta", "gamma")
GROUPS = ("g0", "g1", "g2")
#: Seconds a unit may run when a hang is planned (units are short).
HANG_TIMEOUT = 8.0


def _mostly(common: str, others: tuple[str, ...], weight: int = 4) -> Any:
    """``common`` weight times as often as any one of ``others``."""
    return st.sampled_from((common,) * weight + tuple(o for o in others if o != common))


outputs = st.lists(st.sampled_from(OUTPUTS), max_size=2)


@st.composite
def tests(draw: Any, index: int) -> TestSpec:
    outcome = draw(_mostly("pass", (*OUTCOMES, "subtests"), weight=5))
    subtests = []
    if outcome == "subtests":
        subtests = draw(
            st.lists(_mostly("pass", SUBTEST_OUTCOMES, 2), min_size=1, max_size=3)
        )
    output = draw(st.one_of(st.just([]), st.just([]), outputs))
    return TestSpec(
        name=f"test_{draw(st.sampled_from(WORDS))}{index}",
        outcome=outcome,
        subtests=subtests,
        output=output,
    )


def fixtures(names: tuple[str, ...]) -> Any:
    return st.fixed_dictionaries(
        {n: _mostly("ok", FIXTURE_OUTCOMES, weight=8) for n in names}
    ).map(lambda d: {k: v for k, v in d.items() if v != "ok"})


@st.composite
def cases(
    draw: Any,
    max_modules: int = 3,
    max_classes: int = 3,
    fork: bool | None = None,
    faults: bool | None = None,
) -> Case:
    """A suite and how to run it. ``fork`` fixes the worker mode and
    ``faults`` whether the suite has one (None: either)."""
    strategies = {g: draw(st.sampled_from(STRATEGIES)) for g in GROUPS}
    modules = []
    counter = 0
    for m in range(draw(st.integers(1, max_modules))):
        classes = []
        for _ in range(draw(st.integers(1, max_classes))):
            name = f"C{counter}"
            counter += 1
            kind = draw(st.sampled_from(KINDS))
            n_tests = draw(st.integers(1, 4))
            group = draw(st.one_of(st.none(), st.sampled_from(GROUPS)))
            mp_group: str | list[str] | None = None
            if group is not None:
                # Either form; the first member of a group names the
                # strategy below if nobody did.
                named = draw(st.booleans())
                mp_group = [group, strategies[group]] if named else group
            classes.append(
                ClassSpec(
                    name=name,
                    kind=kind,
                    tests=[draw(tests(i)) for i in range(n_tests)],
                    mp_group=mp_group,
                    fixtures=draw(fixtures(("setUpClass", "tearDownClass"))),
                    output=draw(st.one_of(st.just([]), st.just([]), outputs)),
                )
            )
        modules.append(
            ModuleSpec(
                name=f"m{m}",
                classes=classes,
                fixtures=draw(fixtures(("setUpModule", "tearDownModule"))),
            )
        )
    _name_strategies(modules, strategies)
    case = Case(modules=modules)
    some_fault = st.tuples(st.sampled_from(FAULTS), st.integers(0, 10**6))
    if faults is None:
        fault = draw(st.one_of(st.none(), st.none(), some_fault))
    else:
        fault = draw(some_fault) if faults else None
    if fault is not None:
        _place_fault(case, *fault)
    case.run = draw(runs(faulty=fault is not None))
    if fork is not None:
        case.run.fork = fork
    if fault is not None and fault[0] == "hang":
        case.run.group_timeout = HANG_TIMEOUT
    return case


def _name_strategies(modules: list[ModuleSpec], strategies: dict[str, str]) -> None:
    """A group whose members all use the bare name is ``free``: give its
    first member the drawn strategy, named."""
    members: dict[str, list[ClassSpec]] = {}
    for module in modules:
        for cls in module.classes:
            if cls.mp_group is not None:
                group = (
                    cls.mp_group if isinstance(cls.mp_group, str) else cls.mp_group[0]
                )
                members.setdefault(group, []).append(cls)
    for group, classes in members.items():
        if all(isinstance(c.mp_group, str) for c in classes):
            classes[0].mp_group = [group, strategies[group]]


def _place_fault(case: Case, kind: str, pick: int) -> None:
    """Put one fault at a place chosen among all tests and fixtures."""
    places: list[Any] = []
    for module in case.modules:
        places += [(module.fixtures, f) for f in ("setUpModule", "tearDownModule")]
        for cls in module.classes:
            places += [(cls.fixtures, f) for f in ("setUpClass", "tearDownClass")]
            places += [(t, None) for t in cls.tests]
    target, fixture = places[pick % len(places)]
    if fixture is None:
        target.fault = kind
        target.outcome = "pass"
        target.subtests = []
    else:
        target[fixture] = f"fault:{kind}"


@st.composite
def runs(draw: Any, faulty: bool) -> RunSpec:
    return RunSpec(
        # --parallel-groups 1 runs in the test process, as serially: where
        # serial Django would die, so would it.
        workers=draw(st.integers(2 if faulty else 1, 4)),
        fork=draw(st.booleans()),
        shuffle=draw(st.one_of(st.none(), st.none(), st.integers(0, 9999))),
        reverse=draw(st.booleans()),
        k=draw(st.one_of(*(st.none(),) * 4, st.sampled_from(WORDS))),
        failfast=False if faulty else draw(st.integers(0, 5)) == 0,
    )
