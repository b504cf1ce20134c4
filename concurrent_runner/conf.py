"""Every setting the runner reads from ``django.conf.settings``, read here.

Each is read when asked for, not at import, so that ``override_settings``
and a ``runtests.py`` that calls ``settings.configure()`` late both work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Where durations are kept when CONCURRENT_RUNNER_DURATIONS_FILE is not set.
DEFAULT_DURATIONS_FILENAME = ".concurrent_runner_durations.json"
#: Where --failed finds what failed last, when CONCURRENT_RUNNER_FAILED_FILE
#: is not set: next to the durations file.
DEFAULT_FAILED_FILENAME = ".concurrent_runner_failed.json"
#: Where --sequence files go when CONCURRENT_RUNNER_SEQUENCES_DIR is not set.
DEFAULT_SEQUENCES_DIRNAME = ".concurrent_runner_sequences"
#: Seconds a batch of concurrent calls may take unless told otherwise.
DEFAULT_CALL_TIMEOUT = 30.0


def _setting(name: str, default: Any) -> Any:
    from django.conf import settings

    return getattr(settings, name, default)


def durations_file() -> Path:
    """``CONCURRENT_RUNNER_DURATIONS_FILE``, else the file in the working
    directory."""
    configured = _setting("CONCURRENT_RUNNER_DURATIONS_FILE", None)
    return Path(configured) if configured else Path.cwd() / DEFAULT_DURATIONS_FILENAME


def failed_file() -> Path:
    """``CONCURRENT_RUNNER_FAILED_FILE``, else next to the durations file
    (nowhere if that is os.devnull)."""
    configured = _setting("CONCURRENT_RUNNER_FAILED_FILE", None)
    if configured:
        return Path(configured)
    durations = durations_file()
    if str(durations) == os.devnull:
        return durations
    return durations.with_name(DEFAULT_FAILED_FILENAME)


def parallel_groups() -> Any:
    """``CONCURRENT_RUNNER_PARALLEL_GROUPS``: how many workers ``manage.py
    test`` uses without a flag (a number, or "auto"); None: one process.
    Checked where it is used."""
    return _setting("CONCURRENT_RUNNER_PARALLEL_GROUPS", None)


def sequences_dir() -> Path | None:
    """``CONCURRENT_RUNNER_SEQUENCES_DIR``: where a parallel run writes, for
    each failure, the tests its worker ran before it; else a folder next to
    the durations file (nowhere if that is os.devnull)."""
    configured = _setting("CONCURRENT_RUNNER_SEQUENCES_DIR", None)
    if configured:
        return None if str(configured) == os.devnull else Path(configured)
    durations = durations_file()
    if str(durations) == os.devnull:
        return None
    return durations.with_name(DEFAULT_SEQUENCES_DIRNAME)


def fork_workers() -> bool:
    """``CONCURRENT_RUNNER_FORK_WORKERS``: fork workers where it is safe."""
    return bool(_setting("CONCURRENT_RUNNER_FORK_WORKERS", True))


def split_classes() -> bool:
    """``CONCURRENT_RUNNER_SPLIT_CLASSES``: a long class may run as chunks
    on several workers where recorded durations show it shortens the run."""
    return bool(_setting("CONCURRENT_RUNNER_SPLIT_CLASSES", True))


def fast_sqlite() -> bool:
    """``CONCURRENT_RUNNER_FAST_SQLITE``: the run's SQLite files skip fsync."""
    return bool(_setting("CONCURRENT_RUNNER_FAST_SQLITE", True))


def fast_postgresql() -> bool:
    """``CONCURRENT_RUNNER_FAST_POSTGRESQL``: commits do not wait for fsync."""
    return bool(_setting("CONCURRENT_RUNNER_FAST_POSTGRESQL", True))


def fast_flush() -> bool:
    """``CONCURRENT_RUNNER_FAST_FLUSH``: PostgreSQL flushes with DELETE."""
    return bool(_setting("CONCURRENT_RUNNER_FAST_FLUSH", True))


def fast_exit() -> bool:
    """``CONCURRENT_RUNNER_FAST_EXIT``: skip the last garbage collections."""
    return bool(_setting("CONCURRENT_RUNNER_FAST_EXIT", True))


def call_timeout() -> Any:
    """``CONCURRENT_CALL_TIMEOUT``: seconds for a batch of concurrent calls
    (checked where it is used)."""
    return _setting("CONCURRENT_CALL_TIMEOUT", DEFAULT_CALL_TIMEOUT)


def call_manage_py() -> str | None:
    """``CONCURRENT_CALL_MANAGE_PY``: the project's manage.py, to start the
    call server with."""
    value = _setting("CONCURRENT_CALL_MANAGE_PY", None)
    return str(value) if value else None
