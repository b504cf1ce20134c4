"""Cross-process sync for one test run: ``mp_lock``, ``mp_message_board``,
``mp_trail``.

Everything lives in one private directory (mode 0700) that the runner
creates for the run and names in ``SYNC_ENV``; workers and concurrent-call
processes inherit the variable, so they all share it, and nothing outside
the run can reach it. Outside a run (no variable), a private directory of
this process is used, so the same code works harmlessly in-process; the
concurrent calls such a process makes are handed that directory, so they
share it with their caller (under pytest-django, say).

Locks are ``flock`` locks on files: the kernel releases them when their
holder dies, so a killed holder never deadlocks the others (pytest-mp's
Manager lock stays held forever). Board values are pickled files replaced
atomically. A trail records each consumer as a file it holds a lock on, so
a consumer that died is recognised by its lock being free.

This module imports nothing from the rest of the package: every process of
the run may use it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import math
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, Literal

from ..environment import SYNC_ENV

_private: Path | None = None
_private_pid = 0


def sync_dir() -> Path:
    """The run's directory, or this process's own outside a run."""
    global _private, _private_pid
    shared = os.environ.get(SYNC_ENV)
    if shared:
        return Path(shared)
    if _private is None or _private_pid != os.getpid():
        from ..rundirs import PREFIX, make_run_dir

        _private = make_run_dir(prefix=f"{PREFIX}sync-")
        _private_pid = os.getpid()
        atexit.register(shutil.rmtree, _private, True)
    return _private


def _file_for(kind: str, name: str | bytes) -> Path:
    """A file per name; names are hashed so any name is a safe file name."""
    raw = name.encode() if isinstance(name, str) else name
    digest = hashlib.sha256(raw).hexdigest()[:32]
    folder = sync_dir() / kind
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / digest


class NamedLock:
    """An exclusive lock shared by every process of the run.

    Not re-entrant: a process that takes a lock it already holds waits for
    itself. The kernel releases the lock if the holder dies.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._fds: list[int] = []  # a stack, so one object may nest per thread
        self._guard = threading.Lock()

    def acquire(self, timeout: float | None = None) -> bool:
        fd = os.open(_file_for("locks", self.name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            elif not _flock_within(fd, timeout):
                os.close(fd)
                return False
        except BaseException:
            os.close(fd)
            raise
        with self._guard:
            self._fds.append(fd)
        return True

    def release(self) -> None:
        with self._guard:
            if not self._fds:
                raise RuntimeError(f"mp_lock({self.name!r}) is not held")
            fd = self._fds.pop()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> NamedLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"mp_lock({self.name!r})"


def _flock_within(fd: int, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


class RunLock(NamedLock):
    """``mp_lock``: the run-wide lock, and a factory of named ones."""

    RUN_WIDE = "__run__"

    def __init__(self) -> None:
        super().__init__(self.RUN_WIDE)

    def __call__(self, name: str) -> NamedLock:
        if not isinstance(name, str) or not name:
            raise TypeError(f"mp_lock() takes a non-empty lock name, not {name!r}")
        return NamedLock(name)

    def __repr__(self) -> str:
        return "mp_lock"


#: What a board key may be made of: types whose equal values are equal in
#: every process (a pickle of 1.0 differs from one of 1; one of a frozenset
#: of strings depends on the process's hash seed).
KEY_TYPES = "str, bytes, int, float, bool, None, and tuples and frozensets of these"


def key_name(key: Any) -> bytes:
    """The name of ``key`` on the board: equal for keys that compare equal
    (``1``, ``1.0`` and ``True``; frozensets in any order), whatever the
    process and its hash seed, and different for keys that do not."""
    try:
        return _canonical(key)
    except _UnsupportedKey as exc:
        part = exc.args[0]
        kind = type(part)
        what = f"{kind.__module__}.{kind.__qualname__}"
        where = f"is a {what}" if part is key else f"holds {part!r}, a {what}"
        raise TypeError(
            f"mp_message_board keys are {KEY_TYPES}, so that keys equal in one "
            f"process are equal in all; {key!r} {where}. Use one of those, such "
            f"as str(key)."
        ) from None


class _UnsupportedKey(Exception):
    pass


def _canonical(key: Any) -> bytes:
    kind = type(key)
    if key is None:
        return b"N"
    if kind is float:
        if math.isnan(key):
            raise ValueError(
                "mp_message_board keys cannot be NaN: NaN equals nothing, not "
                "even itself, so it would name a new entry each time."
            )
        if not key.is_integer():
            return b"f" + key.hex().encode() + b";"
        return b"i%d;" % int(key)  # 1.0 == 1, and -0.0 == 0
    if kind is int or kind is bool:
        return b"i%d;" % key  # True == 1
    if kind is str:
        data = key.encode("utf-8", "surrogatepass")
        return b"s%d:" % len(data) + data
    if kind is bytes:
        return b"b%d:" % len(key) + key
    if kind is tuple:
        parts = [_canonical(item) for item in key]
        return b"t%d:" % len(parts) + b"".join(parts)
    if kind is frozenset:
        parts = sorted(_canonical(item) for item in key)
        return b"F%d:" % len(parts) + b"".join(parts)
    raise _UnsupportedKey(key)


class MessageBoard(MutableMapping[Any, Any]):
    """``mp_message_board``: a dict-like store of picklable values.

    Each operation reads or writes the run's directory, so a value written by
    one process is seen by every other at once. Single operations are atomic;
    a read-modify-write is not: do it under ``mp_lock``::

        with mp_lock:
            mp_message_board["count"] = mp_message_board.get("count", 0) + 1
    """

    def _path(self, key: Any) -> Path:
        return _file_for("board", key_name(key))

    def __getitem__(self, key: Any) -> Any:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None
        return pickle.loads(data)[1]

    def __setitem__(self, key: Any, value: Any) -> None:
        path = self._path(key)
        payload = pickle.dumps((key, value))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".new-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def __delitem__(self, key: Any) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return self._path(key).exists()

    def __iter__(self) -> Iterator[Any]:
        folder = sync_dir() / "board"
        if not folder.exists():
            return
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".new-"):
                continue
            with contextlib.suppress(FileNotFoundError):
                yield pickle.loads(path.read_bytes())[0]

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Atomic across processes: only one writer's default is kept."""
        with NamedLock("__board_setdefault__"):
            try:
                return self[key]
            except KeyError:
                self[key] = default
                return default

    def __repr__(self) -> str:
        return f"mp_message_board({dict(self.items())!r})"


_trail_fds: dict[str, list[tuple[int, Path]]] = {}
_trail_guard = threading.Lock()


@contextlib.contextmanager
def mp_trail(name: str, state: Literal["start", "finish"] = "start") -> Iterator[bool]:
    """A shared path with one ``start`` and one ``finish`` event.

    ``with mp_trail(name, "start") as first:`` gives True to the consumer
    that starts the trail while no other consumer is inside it; the body runs
    under the trail's lock, so the others wait until the first one's setup
    is done. ``with mp_trail(name, "finish") as last:`` gives True to the
    consumer that leaves last; consumers that died without finishing do not
    count. Consumers that do not overlap in time each start and finish the
    trail on their own (each sees first and last True).
    """
    if state not in ("start", "finish"):
        raise ValueError(f"mp_trail state must be 'start' or 'finish', not {state!r}")
    folder = _file_for("trails", name)
    folder.mkdir(mode=0o700, exist_ok=True)
    with NamedLock(f"__trail__{name}"):
        if state == "start":
            first = not _live_consumers(folder)
            _enter(name, folder)
            yield first
        else:
            _leave(name)
            yield not _live_consumers(folder)


def _enter(name: str, folder: Path) -> None:
    path = folder / f"{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with _trail_guard:
        _trail_fds.setdefault(name, []).append((fd, path))


def _leave(name: str) -> None:
    with _trail_guard:
        fds = _trail_fds.get(name)
        if not fds:
            raise RuntimeError(
                f"mp_trail({name!r}, 'finish') without a 'start' in this process"
            )
        fd, path = fds.pop()
    path.unlink(missing_ok=True)
    os.close(fd)


def _live_consumers(folder: Path) -> int:
    """Consumers inside the trail; files of dead ones are cleared away."""
    live = 0
    for path in folder.iterdir():
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live += 1  # its owner holds it
        else:
            path.unlink(missing_ok=True)  # its owner is gone
        finally:
            os.close(fd)
    return live


mp_lock = RunLock()
mp_message_board = MessageBoard()
