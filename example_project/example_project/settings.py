"""Settings for the django-concurrent-runner example project.

The database backend is picked with the DB_VENDOR environment variable
("sqlite" by default, "postgresql" or "mysql"), so the same suite can be
run against every backend the runner supports.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Test-only project: the key never protects anything real.
SECRET_KEY = "django-insecure-example-project-for-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "concurrent_runner",
    "shop",
]

MIDDLEWARE: list[str] = []

ROOT_URLCONF = "example_project.urls"

DB_VENDOR = os.environ.get("DB_VENDOR", "sqlite")


def _server_database(engine: str, user: str, port: int) -> dict:
    return {
        "ENGINE": engine,
        "NAME": os.environ.get("DB_NAME", "example_project"),
        "USER": os.environ.get("DB_USER", user),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "HOST": os.environ.get("DB_HOST", "127.0.0.1"),
        "PORT": int(os.environ.get("DB_PORT", port)),
    }


if DB_VENDOR == "sqlite":
    # No TEST["NAME"]: the test database stays in memory.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
        }
    }
elif DB_VENDOR == "postgresql":
    DATABASES = {
        "default": _server_database("django.db.backends.postgresql", "postgres", 5432)
    }
elif DB_VENDOR == "mysql":
    DATABASES = {
        "default": {
            **_server_database("django.db.backends.mysql", "root", 3306),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    raise ValueError(
        f"Unknown DB_VENDOR {DB_VENDOR!r}; expected sqlite, postgresql or mysql."
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

TEST_RUNNER = "concurrent_runner.Runner"
