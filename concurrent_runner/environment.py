"""Names of the environment variables the runner's processes pass on, and
which role this process plays in a run.

Kept apart, with nothing to import, so that checking for one costs nothing.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping

#: Turns a ``manage.py test`` process into a worker (its value: a WorkerSpec).
WORKER_ENV = "CONCURRENT_RUNNER_WORKER"
#: Turns a process into a call server for concurrent calls.
SERVER_ENV = "CONCURRENT_RUNNER_CALL_SERVER"
#: The run's directory for mp_lock, mp_message_board and mp_trail.
SYNC_ENV = "CONCURRENT_RUNNER_SYNC_DIR"
#: Where a measured run's children put their coverage data, and how they
#: measure (``coverage_relay.Relay``).
COVERAGE_ENV = "CONCURRENT_RUNNER_COVERAGE"


class Role(enum.Enum):
    #: The test process the user started: it plans, and runs or hands out.
    PARENT = "parent"
    #: A worker of a parallel run: the same command, run again.
    WORKER = "worker"
    #: A call server for concurrent calls, started by re-running a
    #: ``runtests.py`` that configures settings itself.
    CALL_SERVER = "call server"


def process_role(environ: Mapping[str, str] = os.environ) -> Role:
    """Which part of a run this process plays, from its environment."""
    if environ.get(SERVER_ENV):
        return Role.CALL_SERVER
    if environ.get(WORKER_ENV):
        return Role.WORKER
    return Role.PARENT
