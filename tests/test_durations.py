"""concurrent_runner.planning.durations: the durations file, and estimates
made from it."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.test import SimpleTestCase, override_settings

from concurrent_runner.planning import durations
from concurrent_runner.planning.groups import Strategy, Unit

from .optional import require


def free_unit(*classes: str) -> Unit:
    return Unit(
        key=classes[0], group=None, strategy=Strategy.FREE, classes=list(classes)
    )


def serial_unit(group: str, *classes: str) -> Unit:
    return Unit(
        key=f"group:{group}",
        group=group,
        strategy=Strategy.SERIAL,
        classes=list(classes),
    )


class TempDirTestCase(SimpleTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="durations-test-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.path = self.dir / "durations.json"

    def write(self, content: object) -> None:
        text = content if isinstance(content, str) else json.dumps(content)
        self.path.write_text(text)

    def files(self) -> list[str]:
        return sorted(os.listdir(self.dir))


class LoadTests(TempDirTestCase):
    def test_missing_file(self) -> None:
        self.assertEqual(durations.load(self.path), {})

    def test_corrupt_json(self) -> None:
        for text in ("", "{", "not json", '{"version": 1, "classes": {"a": 1}'):
            with self.subTest(text=text):
                self.write(text)
                self.assertEqual(durations.load(self.path), {})

    def test_wrong_version_or_shape(self) -> None:
        for content in (
            {"version": 2, "classes": {"a.B": 1.0}},
            {"classes": {"a.B": 1.0}},
            {"version": "1", "classes": {"a.B": 1.0}},
            [1, 2, 3],
            "a string",
            {"version": 1, "classes": [["a.B", 1.0]]},
            {"version": 1, "classes": "a.B"},
        ):
            with self.subTest(content=content):
                self.write(content)
                self.assertEqual(durations.load(self.path), {})

    def test_valid(self) -> None:
        self.write({"version": 1, "classes": {"a.B": 1.5, "a.C": 2}})
        self.assertEqual(durations.load(self.path), {"a.B": 1.5, "a.C": 2.0})

    def test_bad_values_are_dropped(self) -> None:
        self.write(
            {"version": 1, "classes": {"a.B": 1.5, "a.C": -1, "a.D": "x", "a.E": None}}
        )
        self.assertEqual(durations.load(self.path), {"a.B": 1.5})

    def test_directory_is_ignored(self) -> None:
        self.assertEqual(durations.load(self.dir), {})

    def test_numbers_a_float_cannot_hold_are_dropped(self) -> None:
        # json reads a 400-digit number as an int that float() overflows on.
        self.write(
            '{"version": 1, "classes": {"a.Big": 1%s, "a.B": 1.5}}' % ("0" * 400)
        )
        self.assertEqual(durations.load(self.path), {"a.B": 1.5})

    def test_non_finite_numbers_are_dropped(self) -> None:
        # json accepts NaN and Infinity; an infinite estimate would sort
        # first forever, a NaN one compares with nothing.
        self.write(
            '{"version": 1, "classes": '
            '{"a.N": NaN, "a.I": Infinity, "a.M": -Infinity, "a.B": 2, "a.T": true}}'
        )
        self.assertEqual(durations.load(self.path), {"a.B": 2.0})

    def test_deeply_nested_json_is_ignored(self) -> None:
        for text in ("[" * 100_000, '{"version": 1, "classes": ' + "[" * 100_000):
            with self.subTest(text=text[:30]):
                self.write(text)
                self.assertEqual(durations.load(self.path), {})

    def test_bytes_that_are_not_utf8_are_ignored(self) -> None:
        self.path.write_bytes(b'{"version": 1, "classes": {"a.\xff": 1}}\xff')
        self.assertEqual(durations.load(self.path), {})


class SaveTests(TempDirTestCase):
    def test_creates_file(self) -> None:
        durations.save(self.path, {"a.B": 1.23456789, "a.A": 2.0})
        data = json.loads(self.path.read_text())
        self.assertEqual(data, {"version": 1, "classes": {"a.A": 2.0, "a.B": 1.2346}})
        self.assertEqual(durations.load(self.path), {"a.A": 2.0, "a.B": 1.2346})

    def test_merges_with_existing(self) -> None:
        durations.save(self.path, {"a.A": 1.0, "a.B": 2.0})
        durations.save(self.path, {"a.B": 5.0, "a.C": 3.0})
        self.assertEqual(
            durations.load(self.path), {"a.A": 1.0, "a.B": 5.0, "a.C": 3.0}
        )

    def test_replaces_corrupt_file(self) -> None:
        self.write("{ broken")
        durations.save(self.path, {"a.A": 1.0})
        self.assertEqual(durations.load(self.path), {"a.A": 1.0})

    def test_nothing_measured_writes_nothing(self) -> None:
        durations.save(self.path, {})
        self.assertEqual(self.files(), [])

    def test_atomic_via_temp_file_and_replace(self) -> None:
        durations.save(self.path, {"a.A": 1.0})
        with mock.patch.object(durations.os, "replace", wraps=os.replace) as replace:
            durations.save(self.path, {"a.B": 2.0})
        replace.assert_called_once()
        source, target = replace.call_args.args
        self.assertEqual(Path(target), self.path)
        # The temp file sits beside the target (same filesystem: an atomic
        # rename) and is gone afterwards.
        self.assertEqual(Path(source).parent, self.dir)
        self.assertNotEqual(Path(source), self.path)
        self.assertEqual(self.files(), ["durations.json"])
        self.assertEqual(durations.load(self.path), {"a.A": 1.0, "a.B": 2.0})

    def test_failed_replace_keeps_old_file_and_leaves_no_temp(self) -> None:
        durations.save(self.path, {"a.A": 1.0})
        with mock.patch.object(
            durations.os, "replace", side_effect=PermissionError(13, "denied")
        ):
            durations.save(self.path, {"a.A": 9.0})
        self.assertEqual(durations.load(self.path), {"a.A": 1.0})
        self.assertEqual(self.files(), ["durations.json"])

    def test_read_only_directory_does_not_raise(self) -> None:
        durations.save(self.path, {"a.A": 1.0})
        os.chmod(self.dir, stat.S_IRUSR | stat.S_IXUSR)
        self.addCleanup(os.chmod, self.dir, stat.S_IRWXU)
        with mock.patch.object(
            durations.tempfile, "mkstemp", wraps=tempfile.mkstemp
        ) as mk:
            if os.access(self.dir, os.W_OK):
                # Root ignores the mode bits; fail the way a read-only
                # directory makes mkstemp fail.
                mk.side_effect = PermissionError(13, "Permission denied")
            durations.save(self.path, {"a.A": 9.0, "a.B": 2.0})
        mk.assert_called_once()
        self.assertEqual(durations.load(self.path), {"a.A": 1.0})
        self.assertEqual(self.files(), ["durations.json"])

    def test_missing_directory_does_not_raise(self) -> None:
        path = self.dir / "nowhere" / "durations.json"
        durations.save(path, {"a.A": 1.0})
        self.assertFalse(path.exists())

    def test_a_directory_at_the_path_is_left_alone(self) -> None:
        target = self.dir / "adir"
        target.mkdir()
        durations.save(target, {"a.A": 1.0})
        self.assertTrue(target.is_dir())
        self.assertEqual(self.files(), ["adir"])

    def test_devnull_is_never_replaced(self) -> None:
        # Through a symlink, so that a regression replaces the link, never
        # the real device.
        link = self.dir / "null"
        link.symlink_to(os.devnull)
        durations.save(link, {"a.A": 1.0})
        self.assertTrue(link.is_symlink())
        self.assertEqual(os.readlink(link), os.devnull)
        self.assertEqual(self.files(), ["null"])
        self.assertEqual(durations.load(link), {})


class EstimateTests(SimpleTestCase):
    def test_no_history_counts_tests(self) -> None:
        units = [free_unit("a.A"), serial_unit("g", "a.B", "a.C"), free_unit("a.D")]
        counts = {"a.A": 3, "a.B": 2, "a.C": 5, "a.D": 1}
        self.assertEqual(durations.estimate(units, counts, {}), [3.0, 7.0, 1.0])

    def test_full_history_uses_recorded_times(self) -> None:
        units = [free_unit("a.A"), serial_unit("g", "a.B", "a.C")]
        counts = {"a.A": 3, "a.B": 2, "a.C": 5}
        history = {"a.A": 0.5, "a.B": 4.0, "a.C": 1.0, "other.X": 100.0}
        self.assertEqual(durations.estimate(units, counts, history), [0.5, 5.0])

    def test_partial_history_scales_unknown_classes(self) -> None:
        units = [
            free_unit("a.Known"),
            free_unit("a.New"),
            serial_unit("g", "a.K2", "a.N2"),
        ]
        counts = {"a.Known": 4, "a.New": 3, "a.K2": 1, "a.N2": 2}
        # 10 s for 5 known tests: 2 s per test. Classes not in this run
        # (other.X) do not count towards the mean.
        history = {"a.Known": 6.0, "a.K2": 4.0, "other.X": 1000.0}
        self.assertEqual(
            durations.estimate(units, counts, history), [6.0, 6.0, 4.0 + 4.0]
        )

    def test_zero_history_falls_back_to_test_counts(self) -> None:
        units = [free_unit("a.Known"), free_unit("a.New")]
        counts = {"a.Known": 2, "a.New": 3}
        self.assertEqual(
            durations.estimate(units, counts, {"a.Known": 0.0}), [0.0, 3.0]
        )

    def test_no_units(self) -> None:
        self.assertEqual(durations.estimate([], {}, {"a.A": 1.0}), [])


class DurationsPathTests(SimpleTestCase):
    def test_setting(self) -> None:
        with override_settings(CONCURRENT_RUNNER_DURATIONS_FILE="/x/y/times.json"):
            self.assertEqual(durations.durations_path(), Path("/x/y/times.json"))
        with override_settings(CONCURRENT_RUNNER_DURATIONS_FILE=Path("rel.json")):
            self.assertEqual(durations.durations_path(), Path("rel.json"))

    def test_default_is_in_the_working_directory(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="durations-cwd-")).resolve()
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(tmp)
        expected = tmp / ".concurrent_runner_durations.json"
        with override_settings():
            # Unset, as in a project that never heard of it.
            if hasattr(settings, "CONCURRENT_RUNNER_DURATIONS_FILE"):
                del settings.CONCURRENT_RUNNER_DURATIONS_FILE
            self.assertFalse(hasattr(settings, "CONCURRENT_RUNNER_DURATIONS_FILE"))
            self.assertEqual(durations.durations_path(), expected)
        for empty in (None, ""):
            with override_settings(CONCURRENT_RUNNER_DURATIONS_FILE=empty):
                self.assertEqual(durations.durations_path(), expected)


class MergeTests(SimpleTestCase):
    def test_merge_combines_shard_files_later_ones_winning(self) -> None:
        from concurrent_runner.planning.durations import main

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            durations.save(root / "a.json", {"m.A": 1.0, "m.B": 2.0})
            durations.save(root / "b.json", {"m.B": 3.0, "m.C": 4.0})
            files = [str(root / name) for name in ("out.json", "a.json", "b.json")]
            self.assertEqual(main(["durations", "merge", *files]), 0)
            self.assertEqual(
                durations.load(root / "out.json"), {"m.A": 1.0, "m.B": 3.0, "m.C": 4.0}
            )

    def merge(self, *args: str) -> tuple[int, str, str]:
        from concurrent_runner.planning.durations import main

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["durations", "merge", *args])
        return code, out.getvalue(), err.getvalue()

    def test_nothing_to_merge_fails(self) -> None:
        # A CI step whose pattern matched nothing (the shell passes it on as
        # written), or whose files were never kept, must not pass.
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            durations.save(root / "out.json", {"m.A": 1.0})
            before = (root / "out.json").read_text()
            (root / "empty.json").write_text("")
            code, out, err = self.merge(
                str(root / "out.json"),
                str(root / "durations-*/.concurrent_runner_durations.shard-*.json"),
                str(root / "empty.json"),
                str(root),
            )
            self.assertEqual(code, 1)
            self.assertEqual(out, "")
            self.assertIn("nothing to merge: none of the 3 file(s)", err)
            self.assertIn("shard-*.json': no such file.", err)
            self.assertIn("empty.json': no durations in it.", err)
            self.assertIn(f"skipped {str(root)!r}: not a file.", err)
            self.assertEqual((root / "out.json").read_text(), before)

    def test_nothing_to_merge_into_a_new_file_writes_none(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            code, _, _ = self.merge(str(out), str(Path(tmp) / "missing.json"))
            self.assertEqual(code, 1)
            self.assertFalse(out.exists())

    def test_a_missing_shard_is_named_and_the_rest_merged(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            durations.save(root / "a.json", {"m.A": 1.0})
            code, out, err = self.merge(
                str(root / "out.json"), str(root / "a.json"), str(root / "b.json")
            )
            self.assertEqual(code, 0, err)
            self.assertIn("b.json': no such file.", err)
            self.assertIn("Merged the durations of 1 file(s)", out)
            self.assertIn(": 1 class(es).", out)
            self.assertEqual(durations.load(root / "out.json"), {"m.A": 1.0})

    def test_an_out_that_cannot_be_written_fails(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            durations.save(root / "a.json", {"m.A": 1.0})
            for out, message in (
                (root / "no-such-dir" / "out.json", "could not write"),
                (root, "is not a file"),
            ):
                with self.subTest(out=out):
                    code, _, err = self.merge(str(out), str(root / "a.json"))
                    self.assertEqual(code, 1)
                    self.assertIn(message, err)
            self.assertEqual(sorted(p.name for p in root.iterdir()), ["a.json"])


def _json_values():
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=10**300, max_value=10**4000)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )


def _durations_documents():
    """JSON shaped like a durations file more often than chance would."""
    from hypothesis import strategies as st

    values = _json_values()
    classes = st.dictionaries(st.text(), values) | values
    return (
        st.fixed_dictionaries(
            {"version": st.sampled_from([1, 1.0, True, "1", 2]), "classes": classes}
        )
        | values
    )


class LoadFuzzTests(TempDirTestCase):
    """Whatever the file holds, load() returns durations it can plan with."""

    def check_loaded(self, loaded: object) -> None:
        import math

        self.assertIsInstance(loaded, dict)
        for key, value in loaded.items():  # type: ignore[attr-defined]
            self.assertIsInstance(key, str)
            self.assertIs(type(value), float)
            self.assertTrue(math.isfinite(value) and value >= 0, value)

    def test_any_json(self) -> None:
        require(self, "hypothesis")
        from hypothesis import given, settings

        @settings(max_examples=150, database=None, deadline=None)
        @given(document=_durations_documents())
        def check(document: object) -> None:
            self.path.write_text(json.dumps(document))
            self.check_loaded(durations.load(self.path))

        check()

    def test_any_bytes(self) -> None:
        require(self, "hypothesis")
        from hypothesis import given, settings
        from hypothesis import strategies as st

        @settings(max_examples=150, database=None, deadline=None)
        @given(
            data=st.binary()
            | st.builds(
                lambda doc, tail: json.dumps(doc).encode() + tail,
                _durations_documents(),
                st.binary(max_size=8),
            )
        )
        def check(data: bytes) -> None:
            self.path.write_bytes(data)
            self.check_loaded(durations.load(self.path))

        check()

    def test_merge_of_any_files_writes_a_file_load_reads(self) -> None:
        require(self, "hypothesis")
        from hypothesis import given, settings

        @settings(max_examples=50, database=None, deadline=None)
        @given(first=_durations_documents(), second=_durations_documents())
        def check(first: object, second: object) -> None:
            sources = [self.dir / "one.json", self.dir / "two.json"]
            for path, document in zip(sources, (first, second), strict=True):
                path.write_text(json.dumps(document))
            target = self.dir / "merged.json"
            target.unlink(missing_ok=True)
            durations.merge(target, sources)
            merged = durations.load(target)
            self.check_loaded(merged)
            expected = {**durations.load(sources[0]), **durations.load(sources[1])}
            self.assertEqual(merged, {k: round(v, 4) for k, v in expected.items()})

        check()
