"""``--timeline PATH``: where each worker spent the run, as HTML or JSON.

The runner records bars (a unit on a worker, a worker starting, the test
databases being built and cloned) and phases; ``render_html`` turns them
into one self-contained page (inline SVG and CSS; no script, font or URL
from outside), ``to_json`` into data for other tools. Both are pure
functions of the recorded data.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
import unittest
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..parallel.controller import RunListener
from ..planning.groups import Unit

FORMAT_VERSION = 1
COLOURS = {
    "free": "#4e79a7",
    "serial": "#f28e2b",
    "isolated_free": "#59a14f",
    "isolated_serial": "#b07aa1",
    "startup": "#bab0ac",
    "databases": "#9c755f",
}


def clones_label(made: int, kept: int, workers: int) -> str:
    """How the clones bar reads: a run that made no clone (every one kept)
    says so, instead of "cloning"."""
    parts = []
    if made or not kept:
        parts.append(f"cloning them for {made} of {workers} workers")
    if kept:
        parts.append(f"using the kept clones of {kept} of {workers} workers")
    return "; ".join(parts)


@dataclass
class Bar:
    kind: str  # "unit", "startup", "databases"
    worker: int  # worker slot; 0 is the parent (its databases lane)
    label: str
    start: float  # seconds since the run started
    end: float
    strategy: str = ""
    group: str | None = None
    tests: list[str] = field(default_factory=list)
    outcome: str = ""  # passed, failed, crashed (units only)
    phase: str = ""
    #: A chunk of a split class ("2/4"); its label is the class's, as for
    #: every chunk of it.
    chunk: str = ""

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class PhaseSpan:
    name: str
    start: float
    end: float

    @property
    def isolated(self) -> bool:
        return self.name.startswith("isolated")


class Timeline:
    """Collects bars as the run goes; times are relative to its creation."""

    def __init__(self, workers: int = 1) -> None:
        self.t0 = time.monotonic()
        self.workers = workers
        self.bars: list[Bar] = []
        self.phases: list[PhaseSpan] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, bar: Bar) -> Bar:
        self.bars.append(bar)
        return bar

    def clones_bar(self, made: int, kept: int, workers: int) -> Bar:
        """The databases lane's bar for the workers' clones: ``made`` this
        run, ``kept`` from an earlier --keepdb run and used again."""
        return self.databases_bar(clones_label(made, kept, workers))

    def databases_bar(self, label: str) -> Bar:
        """A bar on the databases lane (the parent's), from now."""
        now = self.now()
        return self.add(Bar("databases", 0, label, now, now))

    @contextlib.contextmanager
    def timed(self, label: str) -> Iterator[None]:
        """A bar on the databases lane for what the block does."""
        bar = self.databases_bar(label)
        try:
            yield
        finally:
            bar.end = self.now()

    def enter_phase(self, name: str) -> None:
        now = self.now()
        if self.phases and self.phases[-1].name == name:
            return
        if self.phases:
            self.phases[-1].end = now
        self.phases.append(PhaseSpan(name, now, now))

    def close(self) -> None:
        if self.phases:
            self.phases[-1].end = max(
                [self.phases[-1].end] + [b.end for b in self.bars if b.kind == "unit"]
            )

    def write(self, path: Path) -> None:
        self.close()
        data = summarise(self)
        text = to_json(data) if path.suffix == ".json" else render_html(data)
        path.write_text(text, encoding="utf-8")


def summarise(timeline: Timeline) -> dict[str, Any]:
    units = [b for b in timeline.bars if b.kind == "unit"]
    wall = max([b.end for b in timeline.bars], default=0.0)
    total = sum(u.duration for u in units)
    longest = max([u.duration for u in units], default=0.0)
    lower_bound = max(total / max(timeline.workers, 1), longest)
    slowest = sorted(units, key=lambda u: -u.duration)[:5]
    return {
        "version": FORMAT_VERSION,
        "workers": timeline.workers,
        "units": [{**asdict(u), "duration": round(u.duration, 4)} for u in units],
        "overheads": [asdict(b) for b in timeline.bars if b.kind != "unit"],
        "phases": [{**asdict(p), "isolated": p.isolated} for p in timeline.phases],
        "summary": {
            "wall": round(wall, 4),
            "unit_total": round(total, 4),
            "lower_bound": round(lower_bound, 4),
            "efficiency": round(lower_bound / wall, 4) if wall else 0.0,
            "slowest": [
                {"label": _chunk_label(asdict(u)), "duration": round(u.duration, 4)}
                for u in slowest
            ],
        },
    }


def timings_lines(data: dict[str, Any]) -> list[str]:
    """The ``-v 2`` summary: where the time went, and what to split."""
    s = data["summary"]
    if not data["units"]:
        return []
    longest = max(u["duration"] for u in data["units"])
    lines = [
        f"Timings: wall {s['wall']:.2f}s; lower bound {s['lower_bound']:.2f}s = "
        f"max(total {s['unit_total']:.2f}s / {data['workers']} worker(s), longest "
        f"unit {longest:.2f}s); efficiency {s['efficiency']:.0%}.",
        "Slowest units:",
    ]
    lines += [f"  {u['duration']:7.2f}s  {u['label']}" for u in s["slowest"]]
    return lines


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"


# -- HTML ----------------------------------------------------------------------

WIDTH = 1100  # px for the time axis
LANE = 26
GUTTER = 90  # px for lane names


def render_html(data: dict[str, Any]) -> str:
    summary = data["summary"]
    wall = max(summary["wall"], 1e-6)
    lanes = [0, *range(1, data["workers"] + 1)]
    height = len(lanes) * LANE + 30

    def x(t: float) -> float:
        return GUTTER + t / wall * WIDTH

    def lane_y(lane: int) -> int:
        return lanes.index(lane) * LANE + 4

    parts: list[str] = []
    for phase in data["phases"]:
        if phase["isolated"]:
            parts.append(
                f'<rect class="phase isolated" x="{x(phase["start"]):.1f}" y="0" '
                f'width="{max(x(phase["end"]) - x(phase["start"]), 1):.1f}" '
                f'height="{height - 26}"><title>{_esc(phase["name"])}: '
                f"{phase['end'] - phase['start']:.2f}s with nothing else running"
                f"</title></rect>"
            )
    for lane in lanes:
        y = lane_y(lane)
        name = "databases" if lane == 0 else f"worker {lane}"
        kind = "parent" if lane == 0 else "worker"
        parts.append(
            f'<g class="lane {kind}" data-lane="{lane}">'
            f'<rect class="track" x="{GUTTER}" y="{y}" width="{WIDTH}" '
            f'height="{LANE - 6}"/>'
            f'<text class="lane-name" x="4" y="{y + 15}">{name}</text></g>'
        )
    for bar in data["overheads"]:
        parts.append(_bar(bar, x, lane_y(bar["worker"]), bar["kind"]))
    for unit in data["units"]:
        parts.append(_bar(unit, x, lane_y(unit["worker"]), "unit"))
    ticks = _ticks(wall)
    for t in ticks:
        parts.append(
            f'<text class="tick" x="{x(t):.1f}" y="{height - 8}">{t:g}s</text>'
            f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="0" '
            f'y2="{height - 24}"/>'
        )
    svg = (
        f'<svg class="timeline" '
        f'width="{GUTTER + WIDTH + 10}" height="{height}">{"".join(parts)}</svg>'
    )
    slowest = "".join(
        f"<li>{_esc(u['label'])}: {u['duration']:.2f}s</li>" for u in summary["slowest"]
    )
    legend = "".join(
        f'<span class="key"><i style="background:{c}"></i>{k}</span>'
        for k, c in COLOURS.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Test run timeline</title>
<style>{_CSS}</style></head>
<body>
<h1>Test run timeline</h1>
<table class="summary">
<tr><th>Wall time</th><td id="wall">{summary["wall"]:.2f}s</td></tr>
<tr><th>Sum of unit times</th><td id="unit-total">{summary["unit_total"]:.2f}s</td></tr>
<tr><th>Lower bound max(total / {data["workers"]}, longest unit)</th>
<td id="lower-bound">{summary["lower_bound"]:.2f}s</td></tr>
<tr><th>Efficiency (lower bound / wall)</th>
<td id="efficiency">{summary["efficiency"]:.0%}</td></tr>
<tr><th>Workers</th><td id="workers">{data["workers"]}</td></tr>
</table>
<h2>Slowest units</h2><ol class="slowest">{slowest}</ol>
<p class="legend">{legend}<span class="key"><i class="failed-key"></i>failed</span>
<span class="key"><i class="phase-key"></i>isolated phase</span></p>
<p class="hint">Bars are labelled where they are wide enough; hover a bar for its
unit, tests, duration and outcome.</p>
{svg}
</body></html>
"""


def _bar(bar: dict[str, Any], x: Any, y: int, kind: str) -> str:
    colour = COLOURS.get(bar["strategy"] or bar["kind"], "#999")
    classes = f"bar {kind}" + (f" {bar['outcome']}" if bar.get("outcome") else "")
    duration = bar["end"] - bar["start"]
    tests = bar.get("tests") or []
    shown = "\n".join(tests[:25]) + (
        f"\n… and {len(tests) - 25} more" if len(tests) > 25 else ""
    )
    title = (
        f"{_chunk_label(bar)}\n{bar['strategy'] or bar['kind']}"
        + (f", {len(tests)} test(s)" if tests else "")
        + f", {duration:.3f}s"
        + (f", {bar['outcome']}" if bar.get("outcome") else "")
        + (f"\n{shown}" if shown else "")
    )
    left = x(bar["start"])
    width = max(x(bar["end"]) - left, 1.5)
    rect = (
        f'<rect class="{classes}" data-label="{_esc(bar["label"])}" '
        + (f'data-chunk="{_esc(bar["chunk"])}" ' if bar.get("chunk") else "")
        + f'x="{left:.1f}" y="{y + 1}" '
        f'width="{width:.1f}" height="{LANE - 8}" '
        f'fill="{colour}"><title>{_esc(title)}</title></rect>'
    )
    shown_label = fitted(short_name(bar), width)
    if not shown_label:
        return rect
    return rect + (
        f'<text class="bar-label" x="{left + 3:.1f}" y="{y + 14}">'
        f"{_esc(shown_label)}</text>"
    )


#: About how wide one character of a bar's label is, in px (11px sans-serif).
CHAR_WIDTH = 6.5


def short_name(bar: dict[str, Any]) -> str:
    """What a bar is called on the page: a serial group by its name, a class
    by its own name (its module is in the tooltip) and a chunk of a split
    class by the class's name and its number, anything else as is."""
    if bar.get("strategy") in ("serial", "isolated_serial") and bar.get("group"):
        return str(bar["group"])
    label = str(bar["label"])
    if bar.get("kind", "unit") == "unit" and " " not in label:
        label = label.rsplit(".", 1)[-1]
    return f"{label} {bar['chunk']}" if bar.get("chunk") else label


def _chunk_label(bar: dict[str, Any]) -> str:
    """A unit's label, with ``[chunk 2/4]`` after a split class's name."""
    chunk = bar.get("chunk")
    return f"{bar['label']} [chunk {chunk}]" if chunk else str(bar["label"])


def fitted(label: str, width: float) -> str:
    """``label`` cut to fit a bar ``width`` px wide (with an ellipsis), or
    nothing when not even a few characters fit."""
    room = int((width - 6) / CHAR_WIDTH)
    if room >= len(label):
        return label
    if room < 4:
        return ""
    return label[: room - 1] + "…"


def _ticks(wall: float) -> list[float]:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600):
        if wall / step <= 12:
            break
    count = int(wall / step) + 1
    return [round(i * step, 3) for i in range(count)]


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 15px; margin-bottom: 4px; }
table.summary th { text-align: left; font-weight: normal; color: #555;
  padding-right: 16px; }
.legend .key { margin-right: 14px; white-space: nowrap; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
  vertical-align: -1px; }
.legend .failed-key { border: 2px solid #d62728; width: 8px; height: 8px; }
.legend .phase-key { background: #fff3c4; }
.hint { color: #777; font-size: 12px; }
svg.timeline { font-size: 11px; }
.track { fill: #f2f2f2; }
.phase.isolated { fill: #fff3c4; }
.bar { stroke: #fff; stroke-width: 0.5; }
.bar-label { font: 11px sans-serif; fill: #fff; pointer-events: none; }
.bar.failed, .bar.crashed { stroke: #d62728; stroke-width: 2.5; }
.bar.startup, .bar.databases { opacity: 0.8; }
.lane-name { fill: #444; }
.tick { fill: #777; text-anchor: middle; }
.grid { stroke: #ddd; stroke-width: 0.5; }
"""


class TimelineRecorder(RunListener):
    """Follows a parallel run: a bar per worker start and per unit."""

    def __init__(
        self, timeline: Timeline, units: Sequence[Unit], test_ids: Sequence[str]
    ) -> None:
        self.timeline = timeline
        self.units = units
        self.test_ids = test_ids
        self.startup: dict[int, Bar] = {}
        self.running: dict[int, Bar] = {}

    def worker_starting(self, slot: int) -> None:
        now = self.timeline.now()
        self.startup[slot] = self.timeline.add(
            Bar("startup", slot, f"worker {slot} starting", now, now)
        )

    def worker_ready(self, slot: int, ready_at: float | None) -> None:
        bar = self.startup.pop(slot, None)
        if bar is None:
            return
        # When it was ready, not when the loop got to its hello (that waits
        # for the databases).
        now = self.timeline.now()
        ready = now if ready_at is None else ready_at - self.timeline.t0
        bar.end = max(bar.start, min(now, ready))

    def unit_started(self, slot: int, unit: int, phase: str) -> None:
        self.timeline.enter_phase(phase)
        now = self.timeline.now()
        info = self.units[unit]
        chunk = f"{info.chunk[0]}/{info.chunk[1]}" if info.chunk else ""
        self.running[slot] = self.timeline.add(
            Bar(
                "unit",
                slot,
                info.classes[0] if info.chunk else info.label,
                now,
                now,
                strategy=info.strategy.value,
                group=info.group,
                tests=[self.test_ids[i] for i in info.indices],
                outcome="passed",
                phase=phase,
                chunk=chunk,
            )
        )

    def test_done(self, slot: int, record: Any) -> None:
        if record.failed:
            self.fixture_failed(slot)

    def fixture_failed(self, slot: int) -> None:
        if slot in self.running:
            self.running[slot].outcome = "failed"

    def unit_ended(self, slot: int, unit: int, outcome: str) -> None:
        bar = self.running.pop(slot, None)
        if bar is not None:
            bar.end = self.timeline.now()
            if outcome == "crashed":
                bar.outcome = "crashed"


class RecordingResult:
    """Mixed into the result class of an in-process run: a bar per class.

    With ``--parallel-groups 1`` there are no workers; the run is one lane
    whose units are the test classes, in the order they ran.
    """

    timeline: Timeline

    def startTest(self, test: unittest.TestCase) -> None:
        self._timeline_bar_for(test).tests.append(test.id())
        super().startTest(test)  # type: ignore[misc]

    def _timeline_bar_for(self, test: unittest.TestCase) -> Bar:
        label = f"{type(test).__module__}.{type(test).__qualname__}"
        current = getattr(self, "_timeline_bar", None)
        now = self.timeline.now()
        if current is None or current.label != label:
            from ..planning.groups import read_membership

            membership = read_membership(type(test))
            current = self.timeline.add(
                Bar(
                    "unit",
                    1,
                    label,
                    now,
                    now,
                    strategy=(
                        membership.strategy.value if membership.strategy else "free"
                    ),
                    group=membership.group,
                    outcome="passed",
                )
            )
            self._timeline_bar = current
            self._timeline_failures = self._failure_count()
        return current

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)  # type: ignore[misc]
        bar = self._timeline_bar_for(test)  # skipped tests never start (3.12+)
        if test.id() not in bar.tests:
            bar.tests.append(test.id())
        bar.end = self.timeline.now()
        if self._failure_count() > self._timeline_failures:
            bar.outcome = "failed"

    def _failure_count(self) -> int:
        return (
            len(self.failures)  # type: ignore[attr-defined]
            + len(self.errors)  # type: ignore[attr-defined]
            + len(self.unexpectedSuccesses)  # type: ignore[attr-defined]
        )
