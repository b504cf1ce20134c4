"""concurrent_runner.planning.last_failed and reports.summary, in-process."""

from __future__ import annotations

import io
import json
import tempfile
import traceback
import unittest
from pathlib import Path

from concurrent_runner.planning import last_failed
from concurrent_runner.reports.summary import ShortSummary, one_line


def make_class(name: str, module: str = "app.tests") -> type:
    attrs = {"__module__": module, "test_a": lambda self: None}
    attrs["test_b"] = lambda self: None
    return type(name, (unittest.TestCase,), attrs)


def formatted(error: BaseException) -> str:
    try:
        raise error
    except BaseException as exc:
        return "".join(traceback.format_exception(exc))


class LastFailedTests(unittest.TestCase):
    def setUp(self) -> None:
        a, b = make_class("A"), make_class("B", "app.other")
        self.tests = [a("test_a"), a("test_b"), b("test_a"), b("test_b")]

    def test_only_what_failed_or_all_when_nothing_did(self) -> None:
        chosen, again = last_failed.select(
            self.tests, {"app.tests.A.test_b"}, first=False
        )
        self.assertEqual([t.id() for t in chosen], ["app.tests.A.test_b"])
        self.assertEqual(again, 1)
        chosen, again = last_failed.select(self.tests, {"gone.Test"}, first=False)
        self.assertEqual((chosen, again), (self.tests, 0))

    def test_first_keeps_each_part_in_its_order(self) -> None:
        chosen, again = last_failed.select(
            self.tests, {"app.other.B.test_b", "app.tests.A"}, first=True
        )
        self.assertEqual(again, 3)
        self.assertEqual(
            [t.id() for t in chosen],
            [
                "app.tests.A.test_a",
                "app.tests.A.test_b",
                "app.other.B.test_b",
                "app.other.B.test_a",
            ],
        )

    def test_a_run_updates_what_it_ran_and_keeps_the_rest(self) -> None:
        result = unittest.TestResult()
        result.addFailure(self.tests[0], (AssertionError, AssertionError(), None))
        holder = unittest.suite._ErrorHolder("setUpClass (app.other.B)")  # type: ignore[attr-defined]
        result.addError(holder, (ValueError, ValueError(), None))
        ran = last_failed.names(self.tests[:2])
        updated = last_failed.update(
            {"app.tests.A.test_b", "elsewhere.C.test_x"}, ran, result
        )
        self.assertEqual(
            updated, {"app.tests.A.test_a", "app.other.B", "elsewhere.C.test_x"}
        )

    def test_the_file_round_trips_and_a_bad_one_is_nothing(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "failed.json"
            self.assertEqual(last_failed.load(path), set())
            last_failed.save(path, {"b", "a"})
            self.assertEqual(json.loads(path.read_text())["failed"], ["a", "b"])
            self.assertEqual(last_failed.load(path), {"a", "b"})
            for text in ("{", "[1]", '{"version": 1, "failed": [1, "x"]}', "[" * 10**5):
                path.write_text(text)
                self.assertLessEqual(last_failed.load(path), {"x"})


class ShortSummaryTests(unittest.TestCase):
    def test_one_line_is_the_exception_line(self) -> None:
        self.assertEqual(
            one_line(formatted(AssertionError("first\nsecond"))),
            "AssertionError: first",
        )
        try:
            try:
                raise KeyError("inner")
            except KeyError:
                raise ValueError("outer") from None
        except ValueError as exc:
            chained = "".join(traceback.format_exception(exc))
        self.assertEqual(one_line(chained), "ValueError: outer")
        self.assertEqual(
            one_line("WorkerCrashed: it died\n\nmore"), "WorkerCrashed: it died"
        )

    def test_printed_after_the_errors_at_every_verbosity(self) -> None:
        cls = type("Result", (ShortSummary, unittest.TextTestResult), {})
        for verbosity in (0, 1, 2):
            stream = io.StringIO()
            result = cls(unittest.runner._WritelnDecorator(stream), True, verbosity)  # type: ignore[attr-defined]
            test = make_class("A")("test_a")
            result.addFailure(test, (AssertionError, AssertionError("no"), None))
            result.addError(test, (ValueError, ValueError("bad"), None))
            result.printErrors()
            tail = stream.getvalue().split("short test summary info\n", 1)[1]
            self.assertEqual(
                tail.splitlines(),
                [
                    "FAIL app.tests.A.test_a - AssertionError: no",
                    "ERROR app.tests.A.test_a - ValueError: bad",
                ],
            )

    def test_nothing_when_nothing_failed(self) -> None:
        cls = type("Result", (ShortSummary, unittest.TextTestResult), {})
        stream = io.StringIO()
        cls(unittest.runner._WritelnDecorator(stream), True, 1).printErrors()  # type: ignore[attr-defined]
        self.assertNotIn("summary", stream.getvalue())
