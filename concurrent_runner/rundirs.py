"""The run's private temporary directory, and the ones dead runs left.

A run keeps its files (SQLite test databases and their clones, worker logs,
the sync directory) in ``$TMPDIR/concurrent-runner-*`` and removes it when
it ends. A run killed with SIGKILL cannot; so each directory records its
owner (pid, the process's start time, the boot it started in and its pid
namespace), and every run first removes the directories whose owner is
gone: no process with that pid, or one that started at another time (the
pid was reused), or a boot ago. Directories of other users, of live
processes, of other pid namespaces (containers sharing a temporary
directory) and without a readable record are left alone.

Only the standard library: ``calls.sync`` uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

#: Every directory the runner makes in $TMPDIR starts with this.
PREFIX = "concurrent-runner-"
#: The owner's record, in each such directory.
OWNER_FILE = ".owner.json"


def make_run_dir(prefix: str = PREFIX) -> Path:
    """A new private directory that records its owner, after removing the
    directories of owners that are gone."""
    remove_abandoned()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    record_owner(path)
    return path


def record_owner(path: Path, pid: int | None = None) -> None:
    """Write who owns ``path``; atomically, so a reader never sees half."""
    pid = os.getpid() if pid is None else pid
    record = {
        "pid": pid,
        "start": process_start(pid),
        "boot": boot_id(),
        "pidns": pid_namespace(),
    }
    tmp = path / f"{OWNER_FILE}.{pid}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path / OWNER_FILE)


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of
    /proc/PID/stat); None where that cannot be read (not Linux, no such
    process)."""
    try:
        return start_field(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


def start_field(stat_line: str) -> str | None:
    """Field 22 (starttime) of a /proc/PID/stat line."""
    # The command name (field 2) is in parentheses and may hold spaces and
    # parentheses itself: count the fields after its last ")".
    fields = stat_line.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def pid_namespace() -> str | None:
    """This process's pid namespace: a pid means something only in its own
    (containers that share a temporary directory have one each)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def owner_gone(path: Path) -> bool:
    """True only if ``path`` records an owner that is certainly gone."""
    try:
        record = json.loads((path / OWNER_FILE).read_text())
        pid = record["pid"]
        started = record.get("start")
        boot = record.get("boot")
        namespace = record.get("pidns")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False  # being made right now, or not ours to judge
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if boot is not None and boot_id() not in (None, boot):
        return True  # the machine restarted since
    if namespace != pid_namespace():
        return False  # another container's pid: not ours to look up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, as another user
    now = process_start(pid)
    return started is not None and now is not None and now != started


def remove_abandoned(folder: str | Path | None = None) -> list[Path]:
    """Remove this user's runner directories in ``folder`` (the temporary
    directory) whose owner is gone; return them."""
    root = Path(folder if folder is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        with contextlib.suppress(OSError):
            info = entry.lstat()
            # Not a symlink (lstat), and this user's own.
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
                continue
            if owner_gone(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
