"""Functions our concurrent-call tests run in call processes."""

from __future__ import annotations

import ctypes
import os
import signal
import time

from django.contrib.auth.models import Group
from django.db import connections


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def exit_hard(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    ctypes.string_at(0)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def sleep_ignoring_sigterm(seconds: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)


def unserialisable_result():
    return (x for x in range(3))  # generators cannot be pickled


def count_groups(alias: str = "default") -> int:
    return Group.objects.using(alias).count()


def session_id() -> int | None:
    """The server's id of this process's session on "default" (None on
    SQLite, which has no server)."""
    from django.db import connection

    query = {
        "postgresql": "SELECT pg_backend_pid()",
        "mysql": "SELECT CONNECTION_ID()",
    }.get(connection.vendor)
    if query is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone()[0]


def inherited_connections() -> int:
    """How many connections the call server set aside as inherited."""
    from concurrent_runner.calls import server

    return len(server._INHERITED)


def create_group(name: str, alias: str = "default") -> int:
    return Group.objects.using(alias).create(name=name).pk


def get_or_create_group(name: str) -> tuple[int, bool]:
    group, created = Group.objects.get_or_create(name=name)
    return group.pk, created


def database_names() -> dict[str, str]:
    return {
        alias: str(connections[alias].settings_dict["NAME"]) for alias in connections
    }


def open_connections() -> list[str]:
    """Aliases connected when the call starts: a clean start has only those
    the caller's test uses, each opened by this process."""
    return sorted(a for a in connections if connections[a].connection is not None)


def state_marker() -> bool:
    """True if an earlier call in this process left its mark."""
    import builtins

    seen = getattr(builtins, "_concurrent_runner_marker", False)
    builtins._concurrent_runner_marker = True  # type: ignore[attr-defined]
    return seen


def chatty(word: str) -> str:
    print(f"stdout says {word}")
    import sys

    print(f"stderr says {word}", file=sys.stderr)
    return word


def locked_increments(times: int) -> int:
    """Increment a counter file in the run's sync directory under mp_lock."""
    from concurrent_runner import mp_lock
    from concurrent_runner.calls.sync import sync_dir

    path = sync_dir() / "call-counter"
    for _ in range(times):
        with mp_lock("call-counter"):
            value = int(path.read_text()) if path.exists() else 0
            time.sleep(0.001)
            path.write_text(str(value + 1))
    return os.getpid()


def board_write(key: str) -> None:
    from concurrent_runner import mp_message_board

    mp_message_board[key] = os.getpid()


def atomic_default() -> str:
    from django.db import transaction

    with transaction.atomic(using="default"):
        return "entered"
