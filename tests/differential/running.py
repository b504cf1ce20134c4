"""Run a written project under DiscoverRunner or ours, and read the report.

Both runs use ``-v 2``; each status line becomes a (test id, status) pair.
Python 3.10 prints ``test_x (mod.Class)`` and 3.11+ ``test_x
(mod.Class.test_x)``; both are read as ``mod.Class.test_x``, a class or
module fixture's line (``setUpClass (mod.Class)``) as ``mod.Class.setUpClass``,
a subtest's with its parameters after the id.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..e2e import db_suffix
from .project import MARK, ROOT
from .spec import RunSpec

#: Seconds a run may take before it counts as hung (a finding itself).
RUN_TIMEOUT = 180.0

_STATUS = re.compile(
    r"^\s*(?P<name>\w+) \((?P<where>[\w.]+)\)(?P<params> \(.*?\))? \.\.\. "
    r"(?P<status>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$"
)
_RAN = re.compile(r"^Ran (\d+) tests? in", re.MULTILINE)
# What a test printed, up to its end of line, wherever it landed.
_PRINTED = re.compile(re.escape(MARK) + r"[^\n]*(\n|$)")


@dataclass
class Outcome:
    """What one run reported."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: The status lines in the order they were printed.
    sequence: list[tuple[str, str]] = field(default_factory=list)
    ran: int | None = None
    final: str = ""
    #: "OUTMARK kind where" of every line a test printed, wherever it
    #: landed (stdout or stderr; the bytes after it may be shown either way).
    printed: Counter[str] = field(default_factory=Counter)
    timed_out: bool = False
    leftovers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.command)}\nexit code {self.returncode}\n"
            f"--- stderr ---\n{self.stderr}\n--- stdout ---\n{self.stdout}"
        )


def test_id(name: str, where: str) -> str:
    if where.endswith("." + name):  # 3.11+: the id itself
        return where
    return f"{where}.{name}"


def parse(outcome: Outcome) -> Outcome:
    text = _PRINTED.sub("", outcome.stderr)
    for line in text.splitlines():
        match = _STATUS.match(line)
        if match:
            key = test_id(match["name"], match["where"]) + (match["params"] or "")
            pair = (key, match["status"])
            outcome.statuses[pair] += 1
            outcome.sequence.append(pair)
    for chunk in _PRINTED.finditer(outcome.stdout + "\n" + outcome.stderr):
        outcome.printed[" ".join(chunk.group().split()[:3])] += 1
    ran = _RAN.findall(text)
    outcome.ran = int(ran[-1]) if ran else None
    finals = [
        line for line in text.splitlines() if re.match(r"^(OK|FAILED)( \(.*\))?$", line)
    ]
    outcome.final = finals[-1] if finals else ""
    return outcome


def _options(run: RunSpec, ours: bool) -> list[str]:
    args = ["-v", "2", "--noinput"]
    if run.shuffle is not None:
        args += ["--shuffle", str(run.shuffle)]
    if run.reverse:
        args.append("--reverse")
    if run.k:
        args += ["-k", run.k]
    if run.failfast:
        args.append("--failfast")
    if ours:
        args += [
            "--testrunner",
            "concurrent_runner.Runner",
            "--parallel-groups",
            str(run.workers),
        ]
        if run.group_timeout is not None:
            args += ["--group-timeout", str(run.group_timeout)]
    return args


def run(project: Path, run: RunSpec, *, ours: bool) -> Outcome:
    """Run the project's tests; ``ours`` picks our runner, else Django's."""
    command = [sys.executable, "manage.py", "test", *_options(run, ours)]
    tmpdir = Path(tempfile.mkdtemp(prefix="diff-tmp-"))
    env = dict(os.environ)
    for name in ("CONCURRENT_RUNNER_WORKER", "CONCURRENT_RUNNER_COVERAGE"):
        env.pop(name, None)
    env.update(
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        TMPDIR=str(tmpdir),
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",
        DIFF_FORK_WORKERS="1" if run.fork else "0",
        # Our own suite runs this in parallel: one database name per slot.
        DB_NAME_SUFFIX=db_suffix(),
    )
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    try:
        # Whatever outlived the run in its session is a finding; end it.
        os.killpg(process.pid, signal.SIGKILL)
        leftover_pids = True
    except ProcessLookupError:
        leftover_pids = False
    leftovers = sorted(p.name for p in tmpdir.iterdir())
    if leftover_pids:
        leftovers.append("processes outlived the run")
    shutil.rmtree(tmpdir, ignore_errors=True)
    return parse(
        Outcome(
            command=command,
            returncode=process.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            timed_out=timed_out,
            leftovers=leftovers,
        )
    )
