"""coverage_relay: the children of a measured run measured, their data
folded into the test process's.

In-process with small fakes where no measuring is needed; a real fork and a
real fresh child (each in a short script, so that this process is never
measured by a second coverage.py) where it is.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest
from contextlib import redirect_stderr
from pathlib import Path
from unittest import mock

from django.test import SimpleTestCase

from concurrent_runner import coverage_relay
from concurrent_runner.coverage_relay import CoverageRelay, Relay
from concurrent_runner.environment import COVERAGE_ENV

ROOT = Path(__file__).resolve().parents[1]
HAS_COVERAGE = importlib.util.find_spec("coverage") is not None


class FakeCoverage:
    """What the relay asks of a ``coverage.Coverage``."""

    def __init__(self, data_file: str = ".coverage", patch: list[str] | None = None):
        self.options = {"run:data_file": data_file, "run:patch": patch or []}

    def get_option(self, name: str):
        return self.options[name]


class RelayTests(SimpleTestCase):
    def test_travels_in_the_environment(self):
        relay = Relay("/tmp/run/coverage", "c2VyaWFsaXplZA==")
        self.assertEqual(Relay.from_environ({COVERAGE_ENV: relay.dumps()}), relay)
        self.assertEqual(
            Relay.from_environ({COVERAGE_ENV: Relay("/d", None).dumps()}),
            Relay("/d", None),
        )

    def test_no_or_a_bad_value_is_no_relay(self):
        for environ in (
            {},
            {COVERAGE_ENV: ""},
            {COVERAGE_ENV: "{"},
            {COVERAGE_ENV: "{}"},
        ):
            with self.subTest(environ=environ):
                self.assertIsNone(Relay.from_environ(environ))

    def test_each_fresh_child_gets_a_data_file_of_its_own(self):
        relay = Relay("/tmp/run/coverage", None)
        first, second = relay.child_environ("worker"), relay.child_environ("worker")
        self.assertEqual(Relay.from_environ(first), relay)
        self.assertNotEqual(first["COVERAGE_FILE"], second["COVERAGE_FILE"])
        for env in (first, second):
            path = Path(env["COVERAGE_FILE"])
            self.assertEqual(path.parent, Path("/tmp/run/coverage"))
            self.assertTrue(path.name.startswith(".coverage.worker-"), path)

    def test_holds_a_measurement_that_writes_into_its_directory(self):
        relay = Relay("/tmp/run/coverage", None)
        self.assertTrue(relay.holds(FakeCoverage("/tmp/run/coverage/.coverage.w-1")))
        self.assertFalse(relay.holds(FakeCoverage("/tmp/run/.coverage")))
        self.assertFalse(relay.holds(FakeCoverage(".coverage")))
        self.assertFalse(relay.holds(object()))

    def test_child_environ_without_a_relay_adds_nothing(self):
        with mock.patch.dict(os.environ, {COVERAGE_ENV: ""}):
            self.assertEqual(coverage_relay.child_environ("calls"), {})


class ForksMeasuredTests(SimpleTestCase):
    def forks_measured(self, coverage, relay: Relay | None) -> bool:
        env = {COVERAGE_ENV: relay.dumps() if relay else ""}
        with (
            mock.patch.object(coverage_relay, "measuring", return_value=coverage),
            mock.patch.dict(os.environ, env),
        ):
            return coverage_relay.forks_measured()

    def test_nothing_measured(self):
        self.assertTrue(self.forks_measured(None, None))

    def test_a_run_relays_a_measurement_that_can_be_handed_on(self):
        self.assertTrue(self.forks_measured(FakeCoverage(), Relay("/d", "config")))

    def test_not_before_coverage_7_10_4(self):
        # No serialized configuration: workers must be fresh interpreters.
        self.assertFalse(self.forks_measured(FakeCoverage(), Relay("/d", None)))

    def test_outside_a_run_coverages_own_patches(self):
        self.assertFalse(self.forks_measured(FakeCoverage(), None))
        self.assertFalse(self.forks_measured(FakeCoverage(patch=["fork"]), None))
        self.assertTrue(
            self.forks_measured(FakeCoverage(patch=["_exit", "fork"]), None)
        )

    def test_an_old_coverage_without_the_patch_option(self):
        class Old(FakeCoverage):
            def get_option(self, name):
                raise KeyError(name)  # coverage.py raises its ConfigError

        self.assertFalse(self.forks_measured(Old(), None))


@unittest.skipUnless(HAS_COVERAGE, "coverage is not installed")
class ConfigTests(SimpleTestCase):
    def test_the_childrens_configuration(self):
        import coverage

        config = self.make_config(coverage.Coverage(data_file="x", branch=True))
        self.assertIsNotNone(config)
        from coverage.config import CoverageConfig

        children = CoverageConfig.deserialize(config)
        self.assertEqual(children.data_file, "/run/coverage/.coverage")
        self.assertTrue(children.parallel)
        self.assertTrue(children.branch)  # the rest is the user's

    def test_the_measuring_configuration_is_left_alone(self):
        import coverage

        measuring = coverage.Coverage(data_file="x")
        self.make_config(measuring)
        self.assertEqual(measuring.get_option("run:data_file"), "x")
        self.assertFalse(measuring.get_option("run:parallel"))

    def test_none_before_coverage_7_10_4(self):
        class OldConfig:  # no serialize()
            def set_option(self, name, value):
                pass

        old = mock.Mock(config=OldConfig())
        self.assertIsNone(self.make_config(old))

    def make_config(self, measuring) -> str | None:
        return coverage_relay._relay_config(measuring, "/run/coverage")


@unittest.skipUnless(HAS_COVERAGE, "coverage is not installed")
class MergeTests(SimpleTestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(_rmtree, self.tmp)
        self.directory = self.tmp / "relay"

    def child_data(self, name: str, lines: dict[str, list[int]]) -> None:
        from coverage import CoverageData

        data = CoverageData(basename=str(self.directory / name))
        data.add_lines(lines)
        data.write()

    def test_children_are_folded_in_and_their_files_removed(self):
        import coverage

        measuring = coverage.Coverage(data_file=None)  # in memory, not started
        with mock.patch.object(coverage_relay, "measuring", return_value=measuring):
            relay = CoverageRelay.start(self.directory)
        assert relay is not None
        self.child_data(".coverage.w1", {"/src/a.py": [1, 2]})
        self.child_data(".coverage.w2", {"/src/a.py": [3], "/src/b.py": [5]})
        (self.directory / ".coverage.w3").write_bytes(b"not a data file")
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            relay.finish()
        data = measuring.get_data()
        self.assertEqual(sorted(data.lines("/src/a.py")), [1, 2, 3])
        self.assertEqual(sorted(data.lines("/src/b.py")), [5])
        # What cannot be read is named, and the rest still counts.
        self.assertIn("could not be combined", stderr.getvalue())
        self.assertIn(".coverage.w3", stderr.getvalue())
        self.assertEqual(list(self.directory.iterdir()), [])

    def test_publish_and_finish_hand_on_and_restore_the_environment(self):
        import coverage

        measuring = coverage.Coverage(data_file=None)
        with (
            mock.patch.object(coverage_relay, "measuring", return_value=measuring),
            mock.patch.dict(os.environ, {COVERAGE_ENV: "outer"}),
        ):
            relay = CoverageRelay.start(self.directory)
            assert relay is not None
            relay.publish()
            self.assertEqual(Relay.from_environ(), relay.relay)
            relay.finish()
            self.assertEqual(os.environ[COVERAGE_ENV], "outer")

    def test_a_private_directory_goes_with_the_relay(self):
        import coverage

        measuring = coverage.Coverage(data_file=None)
        with mock.patch.object(coverage_relay, "measuring", return_value=measuring):
            relay = CoverageRelay.start()
        assert relay is not None
        self.assertTrue(Path(relay.relay.directory).is_dir())
        relay.finish()
        self.assertFalse(Path(relay.relay.directory).exists())

    def test_nothing_measured_no_relay(self):
        with mock.patch.object(coverage_relay, "measuring", return_value=None):
            self.assertIsNone(CoverageRelay.start(self.directory))
        self.assertFalse(self.directory.exists())


#: Measures subject.py, hands the measuring on to a child (forked, or a
#: fresh interpreter running this script again), then folds its data in.
SCRIPT = """
import os, subprocess, sys
from pathlib import Path
import coverage

tmp = Path(sys.argv[1])
sys.path.insert(0, str(tmp))
from concurrent_runner import coverage_relay
from concurrent_runner.environment import COVERAGE_ENV

if sys.argv[2].startswith("fresh-child"):
    if sys.argv[2] == "fresh-child-measured":
        # As `coverage run`, run again, measures: into COVERAGE_FILE.
        own = coverage.Coverage(branch=True, source=[str(tmp)], omit=[__file__])
        own.start()
    coverage_relay.measure_fresh_child()
    import subject
    subject.in_child(1)
    subject.in_child(0)
    if sys.argv[2] == "fresh-child-measured":
        own.stop()
        own.save()
    sys.exit(0)  # coverage.py saves at exit

cov = coverage.Coverage(data_file=str(tmp / "data"), branch=True,
                        source=[str(tmp)], omit=[__file__])
cov.start()
import subject
relay = coverage_relay.CoverageRelay.start(tmp / "relay")
relay.publish()
if sys.argv[2] == "fork":
    pid = os.fork()
    if pid == 0:
        coverage_relay.measure_forked_child()
        subject.in_child(1)
        subject.in_child(0)
        coverage_relay.save_forked_child()
        os._exit(0)
    os.waitpid(pid, 0)
else:
    env = {**os.environ, **coverage_relay.child_environ("child")}
    subprocess.run([sys.executable, __file__, str(tmp), "fresh-child" + sys.argv[3]],
                   env=env, check=True)
children = sorted(p.name for p in (tmp / "relay").iterdir())
subject.in_parent()
relay.finish()
assert COVERAGE_ENV not in os.environ
cov.stop()
cov.save()
print(children)
"""

SUBJECT = """
def in_parent():
    return 1


def in_child(x):
    if x:
        return 2
    return 3
"""


@unittest.skipUnless(HAS_COVERAGE, "coverage is not installed")
class MeasuredChildTests(SimpleTestCase):
    """A real measured process and its child."""

    def run_script(self, how: str, child: str = "") -> tuple[list[str], dict]:
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(_rmtree, tmp)
        (tmp / "subject.py").write_text(SUBJECT)
        script = tmp / "script.py"
        script.write_text(textwrap.dedent(SCRIPT))
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
        env.pop(COVERAGE_ENV, None)
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(
            [sys.executable, str(script), str(tmp), how, child],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        from coverage import CoverageData

        data = CoverageData(basename=str(tmp / "data"))
        data.read()
        subject = str(tmp / "subject.py")
        children = json.loads(done.stdout.strip().replace("'", '"'))
        return children, {
            "lines": sorted(data.lines(subject) or []),
            "arcs": sorted(data.arcs(subject) or []),
            "files": sorted(p.name for p in tmp.iterdir() if p.name.startswith("data")),
        }

    def check(self, how: str, child: str = "") -> list[str]:
        children, measured = self.run_script(how, child)
        # Every line of subject.py, and both ways of its branch (line 7),
        # in the parent's one data file.
        self.assertEqual(measured["lines"], [2, 3, 6, 7, 8, 9])
        self.assertIn((7, 8), measured["arcs"])
        self.assertIn((7, 9), measured["arcs"])
        self.assertEqual(measured["files"], ["data"])
        self.assertEqual(len(children), 1, children)
        return children

    def test_a_forked_child(self):
        (name,) = self.check("fork")
        # the relay's parallel name
        self.assertRegex(name, r"^\.coverage\.(?!child-).+")

    def test_a_fresh_child_that_nothing_measures(self):
        (name,) = self.check("fresh")
        self.assertRegex(name, r"^\.coverage\.(?!child-).+")  # started from the relay

    def test_a_fresh_child_that_measures_itself(self):
        # Kept as it is, writing where COVERAGE_FILE says.
        (name,) = self.check("fresh", "-measured")
        self.assertTrue(name.startswith(".coverage.child-"), name)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
