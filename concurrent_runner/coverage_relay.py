"""Coverage.py in every process of a run, with no configuration.

When coverage.py measures the test process (``coverage run manage.py
test``, ``coverage run -m django test``, ``coverage run runtests.py``, or a
script that starts it through its API), the processes the run starts are
measured too, and their data is folded into the test process's own before
the run returns: what a worker or a concurrent call ran counts as it would
in a serial run, in the data file coverage.py writes for the test process.
Nothing needs configuring; a configuration of the user's own (``source``,
``omit``, ``branch``, ``concurrency``, ``parallel`` and ``combine``, even
``patch``) applies to every process alike.

How, with coverage.py's own means (the ``process_startup`` that its
``patch = fork`` and ``patch = subprocess`` use):

- The test process hands its children a *relay* in ``COVERAGE_ENV``: a
  directory for their data files, in the run's directory, and its own
  configuration (``CoverageConfig.serialize``, as ``patch = subprocess``
  hands it on) with the data file moved into that directory and
  ``parallel`` on, so that every process writes a file of its own.
- A forked child (a worker, a concurrent call) stops the measurement it
  inherited, starts its own from the relay, and saves it before its
  ``os._exit``, as ``patch = fork, _exit`` would.
- A fresh interpreter (a worker or a call server that re-runs the command,
  ``coverage run`` included) is measured as the test process was, with
  ``COVERAGE_FILE`` naming a file of its own in the directory; a child that
  nothing measures, or that measures into another file, starts measuring
  from the relay.
- The test process folds every file in the directory into its own data
  (``CoverageData.update``) at the end of the run; coverage.py then saves it
  as usual, into ``.coverage`` or, with ``parallel = true``, into the test
  process's own file for ``coverage combine``.

Coverage.py older than 7.10.4 (no ``serialize``, no ``process_startup(force=
True)``) cannot be handed on to a fork: workers are then fresh interpreters
(``forks_measured``), and concurrent calls are not measured.

The child side (``measure_fresh_child``, ``measure_forked_child``,
``save_forked_child``) imports nothing but the standard library and
``environment``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .environment import COVERAGE_ENV

#: Where coverage.process_startup() takes a serialized configuration from.
_PROCESS_CONFIG = "COVERAGE_PROCESS_CONFIG"
#: What SQLite may leave beside a data file: not data files themselves.
_SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


def measuring() -> Any | None:
    """The ``coverage.Coverage`` measuring this process, if any."""
    # Not imported: nothing measures (and importing it costs time).
    coverage = sys.modules.get("coverage")
    current = getattr(getattr(coverage, "Coverage", None), "current", None)
    return current() if current is not None else None


@dataclass(frozen=True)
class Relay:
    """Where a measured run's children put their coverage data, and how
    they measure."""

    directory: str
    #: The test process's configuration, serialized for
    #: ``coverage.process_startup``, with the data file in ``directory`` and
    #: ``parallel`` on; None where coverage.py cannot hand it on.
    config: str | None

    def dumps(self) -> str:
        return json.dumps({"directory": self.directory, "config": self.config})

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Relay | None:
        raw = environ.get(COVERAGE_ENV)
        if not raw:
            return None
        with contextlib.suppress(ValueError, TypeError, KeyError):
            data = json.loads(raw)
            return cls(str(data["directory"]), data["config"])
        return None

    def child_environ(self, kind: str) -> dict[str, str]:
        """What a fresh child's environment adds: the relay, and a data file
        of its own for a measurement its command starts by itself (such as
        ``coverage run``, run again)."""
        name = f".coverage.{kind}-{uuid.uuid4().hex[:12]}"
        return {
            COVERAGE_ENV: self.dumps(),
            "COVERAGE_FILE": os.path.join(self.directory, name),
        }

    def holds(self, coverage: Any) -> bool:
        """Whether ``coverage`` writes its data into this relay's directory."""
        try:
            data_file = coverage.get_option("run:data_file")
        except Exception:
            return False
        return Path(str(data_file)).resolve().parent == Path(self.directory).resolve()

    def data_files(self) -> list[Path]:
        with contextlib.suppress(OSError):
            return sorted(
                path
                for path in Path(self.directory).iterdir()
                if path.is_file() and not path.name.endswith(_SQLITE_SIDE_FILES)
            )
        return []

    def merge_into(self, coverage: Any) -> list[str]:
        """Fold the data files in the directory into what ``coverage`` has
        measured, and remove them; what could not be folded, in words."""
        files = self.data_files()
        if not files:
            return []
        from coverage import CoverageData

        problems = []
        try:
            data = coverage.get_data()
        except Exception as exc:
            return [f"the test process's coverage data could not be read: {exc!r}"]
        for path in files:
            child = None
            try:
                child = CoverageData(basename=str(path))
                child.read()
                data.update(child)
            except Exception as exc:
                problems.append(f"{path.name}: {exc}")
            finally:
                if child is not None:
                    with contextlib.suppress(Exception):
                        child.close()
                path.unlink(missing_ok=True)
        return problems


def _relay_config(coverage: Any, directory: str) -> str | None:
    """``coverage``'s configuration for the children: the same, but with
    its data file in ``directory`` and one file per process."""
    import coverage as package

    config = getattr(coverage, "config", None)
    startup = getattr(package, "process_startup", None)
    if (
        config is None
        or not hasattr(config, "serialize")
        or startup is None
        or "force" not in inspect.signature(startup).parameters
    ):
        return None  # coverage.py < 7.10.4
    try:
        config = copy.deepcopy(config)
        config.set_option("run:data_file", os.path.join(directory, ".coverage"))
        config.set_option("run:parallel", True)
        return str(config.serialize())
    except Exception:
        return None


# -- the test process's side ---------------------------------------------------


class CoverageRelay:
    """The measuring process's side: a relay for its children, and their
    data folded into its own at the end.

    ``start`` returns None when nothing measures this process. A run
    publishes its relay in this process's environment for the run's
    duration (``publish``), so that every child started meanwhile inherits
    it, forks included; a call server outside a run passes it to its
    server only.
    """

    def __init__(self, coverage: Any, relay: Relay, *, owns_directory: bool) -> None:
        self.coverage = coverage
        self.relay = relay
        self._owns_directory = owns_directory
        self._previous: str | None = None
        self._published = False

    @classmethod
    def start(cls, directory: Path | None = None) -> CoverageRelay | None:
        """A relay into ``directory`` (made here), or into a private
        temporary directory that ``finish`` removes."""
        coverage = measuring()
        if coverage is None:
            return None
        owns = directory is None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="concurrent-runner-coverage-"))
        else:
            directory.mkdir(mode=0o700, exist_ok=True)
        relay = Relay(str(directory), _relay_config(coverage, str(directory)))
        return cls(coverage, relay, owns_directory=owns)

    def publish(self) -> None:
        """Hand the relay to every child this process starts from now on."""
        self._previous = os.environ.get(COVERAGE_ENV)
        os.environ[COVERAGE_ENV] = self.relay.dumps()
        self._published = True

    def merge(self) -> None:
        """Fold in what the children have saved so far."""
        for problem in self.relay.merge_into(self.coverage):
            print(
                f"Coverage data of a worker or a concurrent call could not be "
                f"combined into this process's data, and is left out: {problem}",
                file=sys.stderr,
            )

    def finish(self) -> None:
        """Fold in the children's data (they have all ended), and stop
        handing the relay on."""
        try:
            self.merge()
        finally:
            if self._published:
                self._published = False
                if self._previous is None:
                    os.environ.pop(COVERAGE_ENV, None)
                else:
                    os.environ[COVERAGE_ENV] = self._previous
            if self._owns_directory:
                shutil.rmtree(self.relay.directory, ignore_errors=True)


def child_environ(kind: str) -> dict[str, str]:
    """For a fresh child of this process: the relay this process hands on,
    if any (see ``Relay.child_environ``)."""
    relay = Relay.from_environ()
    return relay.child_environ(kind) if relay is not None else {}


def forks_measured() -> bool:
    """Whether a fork of this process is measured as this process is (True
    when nothing measures it)."""
    coverage = measuring()
    if coverage is None:
        return True
    relay = Relay.from_environ()
    if relay is not None:
        return relay.config is not None
    # Outside a run: coverage.py's own patches may follow the fork.
    try:
        patches = coverage.get_option("run:patch") or ()
    except Exception:
        return False
    return {"fork", "_exit"} <= set(patches)


# -- the child's side ------------------------------------------------------------

#: (pid, Coverage) of the measurement this process started from the relay.
_started: tuple[int, Any] | None = None


def measure_fresh_child() -> None:
    """In a fresh interpreter started by a measured run: keep a measurement
    that writes into the relay's directory (``coverage run`` re-run, with
    ``COVERAGE_FILE``), else start one from the relay."""
    relay = Relay.from_environ()
    if relay is None:
        return
    current = measuring()
    if current is not None and relay.holds(current):
        return
    _start(relay, current)


def measure_forked_child() -> None:
    """In a fork of a measured process: measure from here on, into a file
    of this process's own (``save_forked_child`` saves it)."""
    relay = Relay.from_environ()
    if relay is not None:
        _start(relay, measuring())


def save_forked_child() -> None:
    """Before ``os._exit``, which skips coverage.py's own save at exit."""
    if _started is None or _started[0] != os.getpid():
        return
    coverage = _started[1]
    with contextlib.suppress(Exception):
        coverage.stop()
    with contextlib.suppress(Exception):
        coverage.save()


def _start(relay: Relay, current: Any | None) -> None:
    global _started
    if relay.config is None:
        return
    import coverage

    if current is not None:
        # Inherited from the parent (its data file, its data so far): this
        # process's must go to a file of its own.
        with contextlib.suppress(Exception):
            current.stop()
    previous = os.environ.get(_PROCESS_CONFIG)
    os.environ[_PROCESS_CONFIG] = relay.config
    try:
        started = coverage.process_startup(force=True)
    except Exception:
        started = None
    finally:
        # Only for this call: what this process starts is measured as the
        # user's own configuration says (``patch = subprocess``), not by us.
        if previous is None:
            os.environ.pop(_PROCESS_CONFIG, None)
        else:
            os.environ[_PROCESS_CONFIG] = previous
    _started = (os.getpid(), started) if started is not None else None
