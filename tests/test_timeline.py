"""concurrent_runner.reports.timeline: summaries and rendering, without a run."""

from __future__ import annotations

import json
import re
import tempfile
import unittest
from html.parser import HTMLParser
from pathlib import Path

from concurrent_runner.reports.timeline import (
    Bar,
    Timeline,
    clones_label,
    fitted,
    render_html,
    short_name,
    summarise,
    to_json,
)

EXTERNAL = re.compile(r"(https?:)?//|\bsrc\s*=|<link\b|@import|url\(", re.IGNORECASE)


def sample() -> Timeline:
    timeline = Timeline(workers=2)
    timeline.add(Bar("databases", 0, "creating the test databases", 0.0, 1.0))
    timeline.add(Bar("startup", 1, "worker 1 starting", 0.0, 0.8))
    timeline.add(Bar("startup", 2, "worker 2 starting", 0.0, 0.9))
    timeline.phases = []
    timeline.enter_phase("shared")
    timeline.add(
        Bar(
            "unit",
            1,
            "app.tests.A",
            1.0,
            4.0,
            "free",
            None,
            ["app.tests.A.t"],
            "passed",
        )
    )
    timeline.add(
        Bar(
            "unit",
            2,
            "app.tests.B",
            1.0,
            2.0,
            "free",
            None,
            ["app.tests.B.t"],
            "failed",
        )
    )
    timeline.add(
        Bar(
            "unit", 1, "g <&> (serial)", 4.0, 6.0, "isolated_serial", "g",
            ["app.tests.C.t", "app.tests.D.t"], "passed",
        )
    )  # fmt: skip
    timeline.phases[0].end = 4.0
    timeline.phases.append(
        type(timeline.phases[0])("isolated_serial group 'g'", 4.0, 6.0)
    )
    return timeline


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def with_class(self, *names: str) -> list[dict[str, str | None]]:
        return [
            attrs
            for _tag, attrs in self.found
            if set(names) <= set((attrs.get("class") or "").split())
        ]


def parse(text: str) -> Elements:
    parser = Elements()
    parser.feed(text)
    return parser


class SummaryTests(unittest.TestCase):
    def test_totals_and_lower_bound(self) -> None:
        summary = summarise(sample())["summary"]
        self.assertEqual(summary["wall"], 6.0)
        self.assertEqual(summary["unit_total"], 6.0)
        # max(total / workers, longest unit) = max(3, 3)
        self.assertEqual(summary["lower_bound"], 3.0)
        self.assertEqual(summary["efficiency"], 0.5)
        self.assertEqual(
            summary["slowest"][0], {"label": "app.tests.A", "duration": 3.0}
        )

    def test_json_lists_units_with_worker_start_end_outcome(self) -> None:
        data = json.loads(to_json(summarise(sample())))
        self.assertEqual(
            [(u["label"], u["worker"], u["start"], u["end"], u["outcome"])
             for u in data["units"]],
            [("app.tests.A", 1, 1.0, 4.0, "passed"),
             ("app.tests.B", 2, 1.0, 2.0, "failed"),
             ("g <&> (serial)", 1, 4.0, 6.0, "passed")],
        )  # fmt: skip
        self.assertEqual(
            {o["kind"] for o in data["overheads"]}, {"databases", "startup"}
        )
        self.assertEqual([p["isolated"] for p in data["phases"]], [False, True])

    def test_write_picks_the_format_from_the_suffix(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            sample().write(Path(tmp) / "t.json")
            sample().write(Path(tmp) / "t.html")
            self.assertEqual(
                json.loads((Path(tmp) / "t.json").read_text())["version"], 1
            )
            self.assertTrue(
                (Path(tmp) / "t.html").read_text().startswith("<!DOCTYPE html>")
            )


class HtmlTests(unittest.TestCase):
    def setUp(self) -> None:
        self.html = render_html(summarise(sample()))
        self.dom = parse(self.html)

    def test_self_contained(self) -> None:
        self.assertIsNone(EXTERNAL.search(self.html), EXTERNAL.search(self.html))
        self.assertEqual([t for t, _ in self.dom.found if t == "script"], [])

    def test_one_bar_per_unit_and_one_lane_per_worker(self) -> None:
        self.assertEqual(len(self.dom.with_class("bar", "unit")), 3)
        self.assertEqual(len(self.dom.with_class("lane", "worker")), 2)
        self.assertEqual(len(self.dom.with_class("lane", "parent")), 1)
        self.assertEqual(len(self.dom.with_class("bar", "startup")), 2)
        self.assertEqual(len(self.dom.with_class("bar", "databases")), 1)

    def test_failed_units_isolated_phases_and_strategy_colours(self) -> None:
        failed = self.dom.with_class("bar", "unit", "failed")
        self.assertEqual([b["data-label"] for b in failed], ["app.tests.B"])
        self.assertEqual(len(self.dom.with_class("phase", "isolated")), 1)
        fills = {b["data-label"]: b["fill"] for b in self.dom.with_class("bar", "unit")}
        self.assertNotEqual(fills["app.tests.A"], fills["g <&> (serial)"])

    def test_hover_text_names_unit_tests_duration_and_outcome(self) -> None:
        self.assertIn(
            "<title>g &lt;&amp;&gt; (serial)\n"
            "isolated_serial, 2 test(s), 2.000s, passed\n"
            "app.tests.C.t\napp.tests.D.t</title>",
            self.html,
        )

    def test_bars_wide_enough_are_labelled(self) -> None:
        # 6 s of wall time over 1100 px: every unit bar here has room.
        labels = re.findall(r'<text class="bar-label"[^>]*>([^<]*)</text>', self.html)
        self.assertIn("A", labels)  # the class's own name
        self.assertIn("g", labels)  # a serial group's name
        self.assertIn("creating the test databases", labels)

    def test_labels_fit_their_bar_or_are_left_out(self) -> None:
        self.assertEqual(fitted("CheckoutTests", 200), "CheckoutTests")
        self.assertEqual(fitted("CheckoutTests", 50), "Check…")
        self.assertEqual(fitted("CheckoutTests", 20), "")
        unit = {"kind": "unit", "label": "app.tests.A", "strategy": "free"}
        self.assertEqual(short_name(unit), "A")
        group = {"label": "g (serial: x)", "strategy": "serial", "group": "g"}
        self.assertEqual(short_name(group), "g")

    def test_header_totals(self) -> None:
        for element, text in (
            ("wall", "6.00s"),
            ("unit-total", "6.00s"),
            ("lower-bound", "3.00s"),
            ("efficiency", "50%"),
        ):
            self.assertIn(f'id="{element}">{text}<', self.html)


class ClonesLabelTests(unittest.TestCase):
    def test_made_kept_or_both(self) -> None:
        self.assertEqual(clones_label(3, 0, 4), "cloning them for 3 of 4 workers")
        # A second --keepdb run made none: it says it used the kept ones.
        self.assertEqual(
            clones_label(0, 4, 4), "using the kept clones of 4 of 4 workers"
        )
        self.assertEqual(
            clones_label(1, 3, 4),
            "cloning them for 1 of 4 workers; using the kept clones of 3 of 4 workers",
        )
        self.assertEqual(clones_label(0, 0, 1), "cloning them for 0 of 1 workers")
