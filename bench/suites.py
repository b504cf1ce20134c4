"""Generate the benchmark suites: small Django projects in a directory.

    python bench/suites.py /tmp/bench-suites

Each suite is a project of its own (``manage.py``, settings reading
DB_VENDOR like the example project, one app ``benchapp``):

a  40 TransactionTestCase classes x 3 tests: a small ORM write, 0.1 s sleep
b  30 one-test classes, then one class of 20 such tests discovered last
c  200 tiny classes of one empty test (pure overhead)
d  a mix: free classes, two serial groups, an isolated_free group and an
   isolated_serial group; Django gets SerializeMixin for the serial groups
   and runs the isolated part in a second, serial run (tag "isolated")
e  30 one-test classes of 0.1 s, then one class of 40 tests of 0.075 s
   (half the suite's time) discovered last
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

SETTINGS = """
import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, {repo!r})  # the repository, for tests.dbconfig
from tests.dbconfig import database  # noqa: E402

SECRET_KEY = "bench"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                  "concurrent_runner", "benchapp"]
DATABASES = {{"default": database("bench_{name}")}}
TEST_RUNNER = "concurrent_runner.Runner"
CONCURRENT_RUNNER_DURATIONS_FILE = os.environ.get(
    "DURATIONS_FILE", str(BASE_DIR / ".durations.json")
)
"""

MANAGE = """#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

MODELS = """
from django.db import models


class Row(models.Model):
    name = models.CharField(max_length=50)
"""

MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Row",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),
            ],
        ),
    ]
"""

HEADER = """
import time
import unittest

from django.test import TransactionTestCase, tag
from django.test.testcases import SerializeMixin

from benchapp.models import Row


def work(self, pause=0.1):
    Row.objects.create(name=self._testMethodName)
    time.sleep(pause)
"""


def cls(
    name: str,
    tests: int,
    *,
    extra: str = "",
    bases: str = "TransactionTestCase",
    pause: float = 0.1,
) -> str:
    body = "".join(
        f"    def test_{i}(self):\n        work(self, {pause})\n\n"
        for i in range(tests)
    )
    return f"\n\nclass {name}({bases}):\n{extra}{body}"


def suite_a() -> dict[str, str]:
    return {"tests_a.py": HEADER + "".join(cls(f"A{i:02d}", 3) for i in range(40))}


def suite_b() -> dict[str, str]:
    return {
        "tests_b.py": HEADER + "".join(cls(f"B{i:02d}", 1) for i in range(30)),
        # Discovered last: Django hands out classes in discovery order.
        "tests_z_long.py": HEADER + cls("ZLong", 20),
    }


def suite_e() -> dict[str, str]:
    return {
        "tests_e.py": HEADER + "".join(cls(f"E{i:02d}", 1) for i in range(30)),
        # Half the suite's time in one class, discovered last.
        "tests_z_long.py": HEADER + cls("ZLong", 40, pause=0.075),
    }


def suite_c() -> dict[str, str]:
    tiny = "".join(
        f"\n\nclass C{i:03d}(unittest.TestCase):\n"
        f"    def test_it(self):\n        pass\n"
        for i in range(200)
    )
    return {"tests_c.py": HEADER + tiny}


ISOLATED = '\n\n@tag("isolated")\nclass'


def suite_d() -> dict[str, str]:
    parts = [HEADER]
    parts += [cls(f"Free{i:02d}", 2) for i in range(16)]
    for group in ("ledger", "mailbox"):
        # Django keeps a serial group apart with SerializeMixin and a lock.
        extra = (
            f'    mp_group = ("{group}", "serial")\n'
            f'    lockfile = __file__ + ".{group}"\n'
        )
        bases = "SerializeMixin, TransactionTestCase"
        parts += [
            cls(f"{group.title()}{i}", 2, extra=extra, bases=bases) for i in range(3)
        ]
    free = '    mp_group = ("reindex", "isolated_free")\n'
    solo = '    mp_group = ("migrate", "isolated_serial")\n'
    parts += [
        cls(f"Iso{i}", 2, extra=free).replace("\n\nclass", ISOLATED, 1)
        for i in range(3)
    ]
    parts += [
        cls(f"Solo{i}", 2, extra=solo).replace("\n\nclass", ISOLATED, 1)
        for i in range(2)
    ]
    return {"tests_d.py": "".join(parts)}


REPO = Path(__file__).resolve().parents[1]
SUITES = {"a": suite_a, "b": suite_b, "c": suite_c, "d": suite_d, "e": suite_e}


def generate(root: Path) -> dict[str, Path]:
    """Write every suite's project under ``root``; return name -> directory."""
    projects = {}
    for name, make in SUITES.items():
        project = root / f"suite_{name}"
        app = project / "benchapp"
        (app / "migrations").mkdir(parents=True, exist_ok=True)
        settings = SETTINGS.format(name=name, repo=str(REPO))
        (project / "settings.py").write_text(textwrap.dedent(settings))
        (project / "manage.py").write_text(MANAGE)
        (app / "__init__.py").write_text("")
        (app / "models.py").write_text(MODELS)
        (app / "migrations" / "__init__.py").write_text("")
        (app / "migrations" / "0001_initial.py").write_text(MIGRATION)
        for filename, text in make().items():
            (app / filename).write_text(text)
            # SerializeMixin opens its lock file; it must exist.
            for group in ("ledger", "mailbox"):
                (app / f"{filename}.{group}").touch()
        projects[name] = project
    return projects


if __name__ == "__main__":
    for name, path in generate(Path(sys.argv[1])).items():
        print(name, path)
