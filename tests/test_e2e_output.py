"""End-to-end: what tests write shows, and works, as in a serial run.

The ``stdio`` suite writes every way a test can (``sys.stdout.buffer``,
``fileno()``, ``faulthandler``, a subprocess, ``os.write``, a logging
handler made at import, a lone surrogate, class and module fixtures). Run
serially, under Django's ``--parallel 2`` and under ours (forked workers
and fresh interpreters), it must give the same (test id, status) pairs and
show the same lines (each starts with ``<<``; ours and Django's may show
them in another order, and each worker runs the module's fixtures).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from django.test import SimpleTestCase, tag

from .e2e import described, manage, run, test_id

OURS = ("--parallel-groups", "2")
DJANGOS = ("--testrunner", "django.test.runner.DiscoverRunner", "--parallel", "2")
FRESH = {"E2E_FORK_WORKERS": "0"}

STATUS = re.compile(
    r"ok|FAIL|ERROR|skipped.*|expected failure|unexpected success", re.DOTALL
)
TEST_LINE = re.compile(r"^(?P<name>\w+) \((?P<id>[\w.]+)\) \.\.\. ", re.MULTILINE)
MARKED = re.compile(r"<<[^\n]*?>>")


def statuses(output: str) -> dict[str, str]:
    """test id -> status, from -v 2 output, also where what the test printed
    comes between its name and its status."""
    found = {}
    for match in TEST_LINE.finditer(output):
        rest = output[match.end() :].split("\n")
        for line in rest:
            # What the test printed (each of its lines starts with "<<").
            line = MARKED.sub("", line)
            if line:
                status = line if STATUS.fullmatch(line) else f"?{line}"
                found[test_id(match["name"], match["id"])] = status
                break
    return found


def shown(output: str) -> set[str]:
    """The distinct lines the suite wrote."""
    return set(MARKED.findall(output))


def stdio(*args: str, env: dict[str, str] | None = None):
    return manage("stdio", "-v", "2", *args, env=env)


@tag("any_database")
class ParityTests(SimpleTestCase):
    """The same suite, four ways, with the interpreter's default stdout."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.serial = stdio()
        cls.runs = {
            "django": stdio(*DJANGOS),
            "ours": stdio(*OURS),
            "ours, fresh interpreters": stdio(*OURS, env=FRESH),
        }

    def test_the_suite_does_what_it_should_serially(self):
        self.assertEqual(self.serial.returncode, 1, self.serial.output)
        self.assertEqual(self.serial.summary, "FAILED (failures=1)")
        self.assertEqual(len(statuses(self.serial.output)), 9)
        self.assertIn("<<sys.stdout.buffer>>", shown(self.serial.output))

    def test_same_statuses(self):
        want = statuses(self.serial.output)
        for name, result in self.runs.items():
            with self.subTest(name):
                self.assertEqual(statuses(result.output), want, result.output)
                self.assertEqual(result.summary, self.serial.summary)

    def test_same_lines_shown(self):
        want = shown(self.serial.output)
        for name, result in self.runs.items():
            with self.subTest(name):
                self.assertEqual(shown(result.output), want, result.output)

    def test_ours_shows_each_tests_output_with_it(self):
        for name in ("ours", "ours, fresh interpreters"):
            with self.subTest(name):
                out = self.runs[name].output
                self.assertIn(
                    f"{described('stdio.tests.Streams.test_os_write')} ... "
                    "<<os.write(1)>>\n<<os.write(2)>>\nok\n",
                    out,
                )
                self.assertIn(
                    f"{described('stdio.tests.Streams.test_logging')} ... "
                    "<<logged by a handler made at import>>\nok\n",
                    out,
                )
                # The class's fixtures with its tests, not thrown away.
                self.assertLess(
                    out.index("<<setUpClass>>\n<<setUpClass on fd 2>>\n"),
                    out.index("test_faulthandler (stdio.tests.Streams"),
                )
                self.assertLess(
                    out.index("test_subprocess (stdio.tests.Streams"),
                    out.index("<<tearDownClass>>\n"),
                )


@tag("any_database")
class StrictStdoutTests(SimpleTestCase):
    """PYTHONIOENCODING=utf-8:strict: printing a lone surrogate is that
    test's error, and only that test's, in every mode."""

    env = {"PYTHONIOENCODING": "utf-8:strict"}

    def test_a_lone_surrogate_fails_only_its_test(self):
        serial = stdio(env=self.env)
        want = statuses(serial.output)
        self.assertEqual(want["stdio.tests.Streams.test_lone_surrogate"], "ERROR")
        self.assertEqual(serial.summary, "FAILED (failures=1, errors=1)")
        for name, args, env in (
            ("ours", OURS, self.env),
            ("ours, fresh interpreters", OURS, {**self.env, **FRESH}),
        ):
            with self.subTest(name):
                result = stdio(*args, env=env)
                self.assertEqual(statuses(result.output), want, result.output)
                self.assertEqual(result.summary, serial.summary)
                self.assertEqual(result.ran, 9)
                self.assertIn("surrogates not allowed", result.output)
                self.assertEqual(shown(result.output), shown(serial.output))


@tag("any_database")
class BufferTests(SimpleTestCase):
    """--buffer: sys.stdout is unittest's buffer during a test, as serially
    (no .buffer, no fileno()); a failure's report shows what it printed;
    output that does not go through sys.stdout is shown as it comes."""

    def test_same_as_a_serial_buffered_run(self):
        serial = stdio("--buffer")
        want = statuses(serial.output)
        self.assertEqual(want["stdio.tests.Streams.test_stdout_buffer"], "ERROR")
        for name, env in (("ours", None), ("ours, fresh interpreters", FRESH)):
            with self.subTest(name):
                result = stdio("--buffer", *OURS, env=env)
                self.assertEqual(statuses(result.output), want, result.output)
                self.assertEqual(result.summary, serial.summary)
                self.assertEqual(shown(result.output), shown(serial.output))
                self.assertNotIn("<<print>>", result.output)
                report = result.output[result.output.index("FAIL: ") :]
                self.assertIn("Stdout:\n<<printed by a failing test>>", report)


@tag("any_database")
class ClosedStdoutTests(SimpleTestCase):
    def test_a_test_that_closes_stdout_does_not_end_its_worker(self):
        serial = manage("stdio.closing", "-v", "2")
        self.assertEqual(serial.returncode, 0, serial.output)
        for name, args, env in (
            ("ours", OURS, None),
            ("ours, fresh interpreters", OURS, FRESH),
            ("ours, --buffer", (*OURS, "--buffer"), None),
        ):
            with self.subTest(name):
                result = manage("stdio.closing", "-v", "2", *args, env=env)
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(statuses(result.output), statuses(serial.output))
                self.assertEqual(result.summary, "OK")


@tag("any_database")
class BrokenStdoutTests(SimpleTestCase):
    """Our stdout becomes a pipe nobody reads (``| head``, once head has
    read its lines): the tests' output is lost, said once, and the run
    goes on to the end."""

    #: Runs the command with its stdout into a pipe, reads up to the system
    #: check's line, closes the pipe, then says so through the barrier file.
    LAUNCHER = (
        "import os, subprocess, sys\n"
        "r, w = os.pipe()\n"
        "process = subprocess.Popen(sys.argv[1:], stdout=w)\n"
        "os.close(w)\n"
        "with os.fdopen(r, 'rb') as pipe:\n"
        "    for line in pipe:\n"
        "        if line.startswith(b'System check identified'):\n"
        "            break\n"
        "open(os.environ['STDIO_BARRIER'], 'w').close()\n"
        "sys.exit(process.wait())\n"
    )

    def test_the_run_goes_on(self):
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp)
        for name, env in (("ours", {}), ("ours, fresh interpreters", FRESH)):
            with self.subTest(name):
                barrier = tmp / f"barrier-{len(env)}"
                result = run(
                    [sys.executable, "-c", self.LAUNCHER, sys.executable,
                     "manage.py", "test", "--noinput", "stdio.piped", *OURS],
                    env={**env, "STDIO_BARRIER": str(barrier)},
                )  # fmt: skip
                self.assertEqual(result.returncode, 0, result.output)
                self.assertEqual(result.ran, 2)
                self.assertEqual(result.summary, "OK")
                self.assertEqual(
                    result.output.count("Could not write a test's output"),
                    1,
                    result.output,
                )
                self.assertIn("to <stdout>: BrokenPipeError", result.output)
                self.assertNotIn("Traceback", result.output)
