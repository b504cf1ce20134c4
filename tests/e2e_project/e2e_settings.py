"""Settings of the end-to-end project; DB_VENDOR picks the database."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dbconfig import database

if os.environ.get("BREAK_WORKER") and os.environ.get("CONCURRENT_RUNNER_WORKER"):
    raise ImportError("e2e_settings refuses to load in a worker (BREAK_WORKER)")

# E2E_FORK_WORKERS=0: workers are fresh interpreters (the fallback path).
CONCURRENT_RUNNER_FORK_WORKERS = os.environ.get("E2E_FORK_WORKERS") != "0"

SECRET_KEY = "e2e"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "concurrent_runner",
    "outcomes",
    "multidb",
    "stopping",
    "faults",
    "importfail",
    "syncing",
    "covered",
    "flushing",
    "seeded",
    "marks",
    "keptclones",
]
if os.environ.get("KEPT_V2") == "1":  # a migration added between two runs
    MIGRATION_MODULES = {"keptclones": "keptclones.migrations_v2"}
if os.environ.get("E2E_HALF_CLONE"):
    from keptclones.halfclone import install

    install()
DATABASES = {
    "default": database("e2e"),
    # No dependency on "default": a test may use "other" alone.
    "other": {**database("e2e_other"), "TEST": {"DEPENDENCIES": []}},
    "replica": {**database("e2e"), "TEST": {"MIRROR": "default"}},
}
if os.environ.get("E2E_MARKS_BACKEND") == "1":
    # The same database through a backend whose features mark tests.
    for alias in ("default", "other"):
        DATABASES[alias]["ENGINE"] = "marks.backend"
TEST_RUNNER = "concurrent_runner.Runner"
CONCURRENT_RUNNER_FAST_SQLITE = os.environ.get("FAST_SQLITE", "1") == "1"
CONCURRENT_RUNNER_FAST_FLUSH = os.environ.get("FAST_FLUSH", "1") == "1"
CONCURRENT_RUNNER_FAST_POSTGRESQL = os.environ.get("FAST_POSTGRESQL", "1") == "1"
CONCURRENT_RUNNER_DURATIONS_FILE = os.environ.get("DURATIONS_FILE", os.devnull)
CONCURRENT_RUNNER_SPLIT_CLASSES = os.environ.get("SPLIT_CLASSES", "1") == "1"
CONCURRENT_RUNNER_FAILED_FILE = os.environ.get("FAILED_FILE", os.devnull)
CONCURRENT_RUNNER_PARALLEL_GROUPS = os.environ.get("E2E_PARALLEL_GROUPS")
CONCURRENT_RUNNER_SEQUENCES_DIR = os.environ.get("SEQUENCES_DIR", os.devnull)
CONCURRENT_RUNNER_FAST_EXIT = os.environ.get("FAST_EXIT", "1") == "1"

# SQLITE_DIR: on SQLite, the databases are files in that folder (the real
# ones, and with SQLITE_TEST_FILES=1 the test databases too, as a project
# that names them in TEST does), not in the working directory and memory.
if os.environ.get("SQLITE_DIR") and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    for _db in DATABASES.values():
        _file = Path(_db["NAME"]).name
        _db["NAME"] = str(Path(os.environ["SQLITE_DIR"]) / _file)
        _test = _db.setdefault("TEST", {})
        if os.environ.get("SQLITE_TEST_FILES") == "1" and "MIRROR" not in _test:
            _test["NAME"] = str(Path(os.environ["SQLITE_DIR"]) / f"test_{_file}")
