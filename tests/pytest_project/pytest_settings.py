"""Settings of the pytest-django project; DB_VENDOR picks the database."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dbconfig import database

SECRET_KEY = "pytest"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "concurrent_runner", "tally"]
DATABASES = {"default": database("pytest_project")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Concurrent calls are other processes: without concurrent_runner.Runner
    # to turn an in-memory test database into a file, name a file.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / "test_pytest_project.sqlite3")
    }
