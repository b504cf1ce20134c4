"""Helpers for end-to-end tests: run a whole suite in a subprocess.

Every run has a time bound; on timeout the runner gets SIGTERM, then SIGKILL,
and the test fails with what it printed. After every run we check that it
left nothing behind: no process carrying its tag, no run directory.

Our own suite runs in parallel under our runner, so two suites started here
may run at once. Each takes its database names from the worker slot that
starts it (``db_suffix``), so that on PostgreSQL and MariaDB they never share
a test database and a check for leftovers sees only its own.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
E2E_PROJECT = ROOT / "tests" / "e2e_project"
EXAMPLE_PROJECT = ROOT / "example_project"
TIMEOUT = 240.0

STATUS = re.compile(
    r"^(?P<name>\S+) \((?P<id>[\w.]+)\)(?:\n[^\n]*?)? \.\.\. "
    r"(?P<status>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$",
    re.MULTILINE,
)
RAN = re.compile(r"^Ran (\d+) tests? in", re.MULTILINE)
#: Python 3.10's unittest names a test ``test_x (app.tests.Cls)``, 3.11's
#: ``test_x (app.tests.Cls.test_x)``.
QUALIFIED_NAMES = sys.version_info >= (3, 11)


def test_id(name: str, described_id: str) -> str:
    """The id of the test that a status line describes as ``name
    (described_id)``: ``app.tests.Cls.test_x`` on every Python. A fixture
    (``setUpClass (app.tests.Cls)``) and a doctest (``func (app.tests)``)
    keep what they show."""
    if QUALIFIED_NAMES or not name.startswith("test"):
        return described_id
    return f"{described_id}.{name}"


def fixture_error_line(description: str) -> str:
    """The -v 2 status line of a class or module fixture's error: 3.10's
    unittest writes no description there (serially too)."""
    return f"{description} ... ERROR" if QUALIFIED_NAMES else "ERROR"


def described(test_id: str) -> str:
    """How unittest's status lines name the test ``app.tests.Cls.test_x``."""
    cls, _, name = test_id.rpartition(".")
    return f"{name} ({test_id if QUALIFIED_NAMES else cls})"


@dataclass
class Run:
    args: list[str]
    returncode: int
    output: str

    @property
    def ran(self) -> int:
        match = RAN.search(self.output)
        if match is None:
            raise AssertionError(f"no 'Ran N tests' line in:\n{self.output}")
        return int(match.group(1))

    @property
    def summary(self) -> str:
        """The last result line: OK / FAILED (...)."""
        lines = [
            line
            for line in self.output.splitlines()
            if line.startswith(("OK", "FAILED ("))
        ]
        return lines[-1] if lines else ""

    def statuses(self) -> dict[str, str]:
        """test id -> status, from -v 2 output."""
        return {
            test_id(m["name"], m["id"]): m["status"]
            for m in STATUS.finditer(self.output)
        }

    def headers(self) -> list[str]:
        """The ERROR:/FAIL: headers of the failure report, sorted."""
        return sorted(
            line
            for line in self.output.splitlines()
            if re.match(r"^(ERROR|FAIL|UNEXPECTED SUCCESS): ", line)
        )


def db_suffix() -> str:
    """``_w<slot>`` in a worker of our own parallel run, else nothing, after
    the run's own DB_NAME_SUFFIX."""
    # Read at each call: a forked worker imported this module before it
    # became a worker.
    from concurrent_runner.parallel.worker import WorkerSpec

    spec = WorkerSpec.from_environ()
    # After this suite's own suffix: two checkouts tested side by side on
    # one server (DB_NAME_SUFFIX=_a, _b) never share a database either.
    outer = os.environ.get("DB_NAME_SUFFIX", "")
    return outer + (f"_w{spec.slot}" if spec is not None else "")


def e2e_databases(clones_only: bool = False) -> str:
    """A pattern for the names of the e2e project's test databases."""
    clone = r"_\d+" if clones_only else r"(_\d+)?"
    return rf"test_e2e(_other)?{db_suffix()}{clone}"


def _tagged_pids(tag: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"E2E_RUN_TAG={tag}".encode() in environ:
            pids.append(int(entry.name))
    return pids


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Started:
    """A suite running in the background, for tests that signal it."""

    def __init__(
        self,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str] | None,
        answers: str | None = None,
    ):
        self.tag = uuid.uuid4().hex
        # A private TMPDIR: whatever the run leaves in it is the run's own.
        self.tmpdir = Path(tempfile.mkdtemp(prefix="e2e-tmp-"))
        self.argv = args if os.path.isabs(args[0]) else [sys.executable, *args]
        base = dict(os.environ)
        base.pop("CONCURRENT_RUNNER_WORKER", None)
        base.pop("CONCURRENT_RUNNER_COVERAGE", None)  # if this suite is measured
        suffix = db_suffix()
        full_env = {
            **base,
            # Unbuffered by default, so that runs compared with each other
            # interleave stdout and stderr the same way whatever the shell
            # says; a test of buffered output passes PYTHONUNBUFFERED="".
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "E2E_RUN_TAG": self.tag,
            "TMPDIR": str(self.tmpdir),
            "PYTHONFAULTHANDLER": "1",
            # Database names of this slot: the e2e project's, the example's.
            "DB_NAME_SUFFIX": suffix,
            "DB_NAME": f"example_project{suffix}",
            **(env or {}),
        }
        self.output_path = self.tmpdir.parent / f"{self.tmpdir.name}.out"
        self.began = time.monotonic()
        # What a user types at prompts (Django's "Type 'yes' ..."), from a
        # file: a prompt nobody expected reads EOF instead of hanging.
        answers_path = self.tmpdir.parent / f"{self.tmpdir.name}.in"
        answers_path.write_text(answers or "")
        self.cpu_before = _children_cpu()
        with open(self.output_path, "wb") as out, open(answers_path, "rb") as stdin:
            answers_path.unlink()
            self.process = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=full_env,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
                # As from a terminal, also where this process ignores Ctrl-C
                # (a background job): signalled runs must not inherit that.
                preexec_fn=_default_sigint,
            )

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> None:
        # As long as a whole run may take: on a machine as busy as CI's with
        # three suites side by side, reaching a point took more than 60 s.
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"never printed {text!r}:\n{self.output()}")
            time.sleep(0.05)

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    def finish(self, timeout: float = TIMEOUT, check_clean: bool = True) -> Run:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            raise AssertionError(
                f"{self.argv} did not finish within {timeout}s; output:\n"
                f"{self.output()}"
            ) from None
        result = Run(self.argv, self.process.returncode, self.output())
        _log_cost(self)
        try:
            if check_clean:
                assert_nothing_left(self.tag, self.tmpdir, result)
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.output_path.unlink(missing_ok=True)
        return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _log_cost(started: Started) -> None:
    """With E2E_COST_LOG=FILE: a JSON line per run (the e2e test that ran
    it, its wall time and the processor time of its process tree, roughly:
    what this process reaped meanwhile), to find where CI's time goes."""
    log = os.environ.get("E2E_COST_LOG")
    if not log:
        return
    import traceback

    where = next(
        (
            f"{Path(frame.filename).stem}:{frame.name}"
            for frame in traceback.extract_stack()
            if Path(frame.filename).name.startswith("test_")
        ),
        "?",
    )
    entry = {
        "test": where,
        "argv": started.argv[1:],
        "wall": round(time.monotonic() - started.began, 2),
        "cpu": round(_children_cpu() - started.cpu_before, 2),
    }
    with open(log, "a") as out:
        out.write(json.dumps(entry) + "\n")


def start(
    args: list[str],
    *,
    cwd: Path = E2E_PROJECT,
    env: dict[str, str] | None = None,
    answers: str | None = None,
) -> Started:
    """Start ``python *args`` (or a full argv when args[0] is absolute);
    ``answers`` is its stdin."""
    return Started(args, cwd=cwd, env=env, answers=answers)


def run(
    args: list[str],
    *,
    cwd: Path = E2E_PROJECT,
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
    check_clean: bool = True,
) -> Run:
    """Run a suite to the end, within ``timeout``, and check it left nothing."""
    return start(args, cwd=cwd, env=env).finish(timeout, check_clean)


def server_databases(connection, pattern: str) -> set[str]:
    """Databases on the test connection's server whose name matches."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database")
        elif connection.vendor == "mysql":
            cursor.execute("SHOW DATABASES")
        else:
            return set()
        names = {row[0] for row in cursor.fetchall()}
    return {n for n in names if re.fullmatch(pattern, n)}


def start_manage(*args: str, **kwargs) -> Started:
    return start(["manage.py", "test", "--noinput", *args], **kwargs)


def assert_nothing_left(tag: str, tmpdir: Path, result: Run) -> None:
    deadline = time.monotonic() + 10
    while (pids := _tagged_pids(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pids:
        raise AssertionError(f"processes {pids} outlived {result.args}")
    left = sorted(p.name for p in tmpdir.iterdir())
    if left:
        raise AssertionError(f"{result.args} left {left} in its TMPDIR")


def counted(tests: int, skipped: int = 0) -> int:
    """What "Ran N tests" says: Python 3.12.0 and 3.12.1 do not count tests
    skipped by a decorator (they never start them); 3.12.2 and later do."""
    unstarted = (3, 12) <= sys.version_info[:3] < (3, 12, 2)
    return tests - skipped if unstarted else tests


#: The "outcomes" suite: 10 tests, one of them skipped.
OUTCOMES_RAN = counted(10, skipped=1)


def manage(*args: str, **kwargs) -> Run:
    return run(["manage.py", "test", "--noinput", *args], **kwargs)


def example(*args: str, **kwargs) -> Run:
    kwargs.setdefault("cwd", EXAMPLE_PROJECT)
    return manage(*args, **kwargs)
