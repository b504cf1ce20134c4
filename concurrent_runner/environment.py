"""Names of the environment variables the runner's processes pass on.

Kept apart, with nothing to import, so that checking for one costs nothing.
"""

#: Turns a ``manage.py test`` process into a worker (its value: a WorkerSpec).
WORKER_ENV = "CONCURRENT_RUNNER_WORKER"
#: Turns a process into a call server for concurrent calls.
SERVER_ENV = "CONCURRENT_RUNNER_CALL_SERVER"
#: The run's directory for mp_lock, mp_message_board and mp_trail.
SYNC_ENV = "CONCURRENT_RUNNER_SYNC_DIR"
