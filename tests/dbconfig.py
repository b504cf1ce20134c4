"""Database settings for our tests, chosen by the DB_VENDOR variable.

``sqlite`` (the default) needs nothing; ``postgresql`` and ``mysql`` expect
the servers on 127.0.0.1 (override with DB_HOST, DB_PORT, DB_USER,
DB_PASSWORD). DB_NAME_SUFFIX is added to every database name, so that suites
run side by side on one server never share a database (see tests/e2e.py).
"""

from __future__ import annotations

import os
from typing import Any

VENDORS = ("sqlite", "postgresql", "mysql")


def vendor() -> str:
    value = os.environ.get("DB_VENDOR", "sqlite")
    if value not in VENDORS:
        raise ValueError(f"DB_VENDOR={value!r}; choose one of {', '.join(VENDORS)}")
    return value


def database(name: str) -> dict[str, Any]:
    kind = vendor()
    name += os.environ.get("DB_NAME_SUFFIX", "")
    if kind == "sqlite":
        # No TEST NAME: an in-memory test database, which the runner must
        # turn into a file.
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{name}.sqlite3"}
    host = os.environ.get("DB_HOST", "127.0.0.1")
    if kind == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": os.environ.get("DB_USER", "postgres"),
            "PASSWORD": os.environ.get("DB_PASSWORD", ""),
            "HOST": host,
            "PORT": os.environ.get("DB_PORT", "5432"),
        }
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": name,
        "USER": os.environ.get("DB_USER", "root"),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "HOST": host,
        "PORT": os.environ.get("DB_PORT", "3306"),
        "OPTIONS": {"charset": "utf8mb4"},
    }
