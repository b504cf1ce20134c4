"""concurrent_runner.parallel.protocol: what crosses the pipe, and how
errors survive it."""

from __future__ import annotations

import json
import os
import pickle
import sys
import threading
import traceback
import unittest
from typing import Any
from unittest import mock

from concurrent_runner.parallel import protocol as p
from concurrent_runner.parallel.worker import WorkerSpec


class UnreducibleError(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("this error refuses to be pickled")


class CallbackError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.callback = lambda: None


class NeedsTwoArgsError(Exception):
    """A custom ``__init__`` that ``cls(*self.args)`` cannot call."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")
        self.parts = (a, b)


class UnloadableError(Exception):
    """Pickles, but its own ``__reduce__`` cannot be loaded back."""

    def __init__(self, a: str) -> None:
        super().__init__(a)

    def __reduce__(self) -> Any:
        return (type(self), ())


class ProjectError(Exception):
    """Defined after tblib's install(), like a project's own errors."""


def raise_value_error() -> None:
    raise ValueError("deep down")


RAISE_LINE = raise_value_error.__code__.co_firstlineno + 1


def caught(func: Any, *args: Any) -> p.ExcInfo:
    try:
        func(*args)
    except BaseException:
        info = sys.exc_info()
    else:
        raise AssertionError("did not raise")
    return info  # type: ignore[return-value]


def raiser(exc: BaseException) -> Any:
    def raise_it() -> None:
        raise exc

    return raise_it


class PortableExcInfoTests(unittest.TestCase):
    def test_picklable_error_is_returned_as_is(self) -> None:
        err = caught(raise_value_error)
        self.assertIs(p.portable_exc_info(err), err)

    def assert_stand_in(self, exc: BaseException, fragments: tuple[str, ...]) -> None:
        err = caught(raiser(exc))
        portable = p.portable_exc_info(err, test="fake.mod.Sample.test_it")
        self.assertIsNot(portable, err)
        exc_type, value, tb = portable
        self.assertIs(exc_type, p.RemoteError)
        self.assertIsInstance(value, p.RemoteError)
        self.assertIsNone(tb)
        message = str(value)
        qualname = f"{type(exc).__module__}.{type(exc).__qualname__}"
        self.assertIn(qualname, message)
        self.assertIn("fake.mod.Sample.test_it", message)
        # The remote traceback, as text: the frame it came from and the error.
        self.assertIn("Traceback (most recent call last)", message)
        self.assertIn("in raise_it", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        # The stand-in itself travels.
        loaded = pickle.loads(pickle.dumps(portable))
        self.assertIs(loaded[0], p.RemoteError)
        self.assertEqual(str(loaded[1]), message)

    def test_error_whose_reduce_raises(self) -> None:
        self.assert_stand_in(
            UnreducibleError("odd"),
            ("UnreducibleError: odd", "this error refuses to be pickled"),
        )

    def test_error_holding_a_lambda(self) -> None:
        self.assert_stand_in(CallbackError("has a callback"), ("has a callback",))

    def test_error_that_does_not_unpickle(self) -> None:
        self.assert_stand_in(UnloadableError("unloadable"), ("unloadable",))

    def test_custom_init_error_arrives_intact(self) -> None:
        err = caught(raiser(NeedsTwoArgsError("a", "b")))
        self.assertIs(p.portable_exc_info(err), err)
        loaded = pickle.loads(pickle.dumps(err))
        self.assertIs(loaded[0], NeedsTwoArgsError)
        self.assertEqual(str(loaded[1]), "a/b")
        self.assertEqual(loaded[1].parts, ("a", "b"))

    def test_traceback_round_trips_with_file_and_line(self) -> None:
        err = caught(raise_value_error)
        loaded = pickle.loads(pickle.dumps(p.portable_exc_info(err)))
        self.assertIs(loaded[0], ValueError)
        self.assertEqual(str(loaded[1]), "deep down")
        self.assertIsNotNone(loaded[2])
        text = "".join(traceback.format_exception(*loaded))
        original = "".join(traceback.format_exception(*err))
        self.assertIn(
            f'File "{__file__}", line {RAISE_LINE}, in raise_value_error', text
        )
        self.assertIn('raise ValueError("deep down")', text)
        self.assertEqual(text.splitlines()[-1], original.splitlines()[-1])
        frames = [f.name for f in traceback.extract_tb(loaded[2])]
        self.assertEqual(frames, [f.name for f in traceback.extract_tb(err[2])])

    def test_chained_cause_survives(self) -> None:
        def chained() -> None:
            try:
                raise_value_error()
            except ValueError as exc:
                raise KeyError("outer") from exc

        err = caught(chained)
        loaded = pickle.loads(pickle.dumps(p.portable_exc_info(err)))
        text = "".join(traceback.format_exception(*loaded))
        self.assertIn("ValueError: deep down", text)
        self.assertIn("direct cause", text)
        self.assertIn("KeyError: 'outer'", text)

    def test_cause_of_a_project_error_survives(self) -> None:
        def chained() -> None:
            try:
                raise_value_error()
            except ValueError:
                raise ProjectError("outer")  # noqa: B904 (implicit context)

        err = caught(chained)
        loaded = pickle.loads(pickle.dumps(p.portable_exc_info(err)))
        self.assertIs(loaded[0], ProjectError)
        self.assertIsInstance(loaded[1].__context__, ValueError)
        text = "".join(traceback.format_exception(*loaded))
        self.assertIn("ValueError: deep down", text)
        self.assertIn("During handling of the above exception", text)
        self.assertIn(f"line {RAISE_LINE}, in raise_value_error", text)


class PortableTests(unittest.TestCase):
    def test_picklable_values_pass(self) -> None:
        for value in (1, "x", None, (1, 2), {"a": [1, 2]}, 2.5):
            with self.subTest(value=value):
                self.assertEqual(p.portable(value), value)

    def test_unpicklable_values_become_repr(self) -> None:
        func = lambda: None  # noqa: E731
        lock = threading.Lock()
        self.assertEqual(p.portable(func), repr(func))
        self.assertEqual(p.portable(lock), repr(lock))
        self.assertEqual(p.portable([1, lock]), repr([1, lock]))


class UnicodeErrorTests(unittest.TestCase):
    """A lone surrogate printed to a strict stdout: the error's report reads
    as it does serially, after the trip through the pipe."""

    def test_encode_and_decode_errors_keep_their_message(self) -> None:
        def strict_print() -> None:
            "<\udcff>".encode("utf-8")

        def bad_bytes() -> None:
            b"<\xff>".decode("utf-8")

        for func in (strict_print, bad_bytes):
            with self.subTest(func.__name__):
                err = p.portable_exc_info(caught(func))
                loaded = pickle.loads(pickle.dumps(err))
                self.assertIs(loaded[0], err[0])
                self.assertEqual(str(loaded[1]), str(err[1]))
                self.assertIn("in position 1", str(loaded[1]))
                text = "".join(traceback.format_exception(*loaded))
                self.assertIn(f"in {func.__name__}", text)

    def test_the_chain_travels_too(self) -> None:
        def chained() -> None:
            try:
                raise KeyError("first")
            except KeyError as exc:
                raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "no") from exc

        loaded = pickle.loads(pickle.dumps(p.portable_exc_info(caught(chained))))
        self.assertIsInstance(loaded[1].__cause__, KeyError)
        self.assertEqual(loaded[1].reason, "no")


class MessageTests(unittest.TestCase):
    def test_test_done_pickles_with_outcomes(self) -> None:
        record = p.TestRecord(
            index=3,
            outcomes=[
                p.Failure(caught(raise_value_error)),
                p.SubTestResult("m", {"i": 1}, caught(raise_value_error)),
                p.Skip("why"),
            ],
            duration=0.5,
            stdout=b"out \xff",
            stderr=b"err",
            buffered_stdout="held \udcff",
            sql="SELECT 1",
        )
        loaded = pickle.loads(pickle.dumps(p.TestDone(unit=2, record=record)))
        self.assertEqual(loaded.unit, 2)
        self.assertEqual(
            (loaded.record.index, loaded.record.duration, loaded.record.stdout),
            (3, 0.5, b"out \xff"),
        )
        self.assertEqual(
            (loaded.record.stderr, loaded.record.sql), (b"err", "SELECT 1")
        )
        self.assertEqual(loaded.record.buffered_stdout, "held \udcff")
        failure, subtest, skip = loaded.record.outcomes
        self.assertIs(failure.err[0], ValueError)
        self.assertEqual((subtest.message, subtest.params), ("m", {"i": 1}))
        self.assertEqual(skip, p.Skip("why"))

    def test_simple_messages_round_trip(self) -> None:
        for message in (
            p.RunUnit(1, [3, 4]),
            p.Stop(),
            p.Hello(123, ["a.B.test_c"]),
            p.TestStarted(1, 3),
            p.UnitDone(1, {"a.B": 0.25}),
            p.UnitOutput(1, b"setUpClass \xff\n", b""),
            p.FixtureOutcome(1, "setUpClass (a.B)", p.Skip("no"), "held\n", ""),
            p.Configure({"default": {"NAME": "x"}, "other": "default"}, {}, False),
        ):
            with self.subTest(message=message):
                self.assertEqual(pickle.loads(pickle.dumps(message)), message)


class WorkerSpecTests(unittest.TestCase):
    def test_round_trip_through_the_environment(self) -> None:
        for spec in (
            WorkerSpec(fd=7, slot=2, run=1, shuffle_seed=12345, stack_file="/t/s"),
            WorkerSpec(fd=3, slot=1, run=2, shuffle_seed=None, stack_file="/t/u"),
        ):
            with self.subTest(spec=spec):
                raw = spec.dumps()
                self.assertIsInstance(json.loads(raw), dict)
                with mock.patch.dict(os.environ, {p.WORKER_ENV: raw}):
                    self.assertEqual(WorkerSpec.from_environ(), spec)

    def test_no_marker_means_not_a_worker(self) -> None:
        with mock.patch.dict(os.environ):
            os.environ.pop(p.WORKER_ENV, None)
            self.assertIsNone(WorkerSpec.from_environ())
        with mock.patch.dict(os.environ, {p.WORKER_ENV: ""}):
            self.assertIsNone(WorkerSpec.from_environ())
