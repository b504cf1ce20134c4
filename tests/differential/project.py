"""Write a temporary Django project that holds a generated suite.

One app, ``dapp``, with a model and a data migration that leaves one row
(``seed``). A ``TestCase`` checks the row is there (as serial Django
guarantees: every ``TestCase`` runs before any flush); a
``TransactionTestCase`` writes a row and checks it is the only one of its
kind (every flush left the table clean). Every line a test prints carries
:data:`MARK`, so that the runners' reports can be read without it.

``oracle=True`` writes the project DiscoverRunner is compared on when the
suite has faults: a fault becomes an exception, which is what ours must
report where serial Django would die.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .spec import Case, ClassSpec, ModuleSpec, TestSpec

MARK = "OUTMARK"
APP = "dapp"
ROOT = Path(__file__).resolve().parents[2]

SETTINGS = f"""\
import os
import sys

sys.path.insert(0, {str(ROOT)!r})
import statuslines  # noqa: F401  (one full -v 2 line per event)
from tests.dbconfig import database

SECRET_KEY = "differential"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [{APP!r}]
DATABASES = {{"default": database("differential")}}
CONCURRENT_RUNNER_FORK_WORKERS = os.environ.get("DIFF_FORK_WORKERS") != "0"
CONCURRENT_RUNNER_DURATIONS_FILE = os.devnull
CONCURRENT_RUNNER_FAILED_FILE = os.devnull
CONCURRENT_RUNNER_SEQUENCES_DIR = os.devnull
"""

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

# unittest's -v 2 lines differ between Python versions and are not always
# whole: 3.10 names no class or module fixture and no subtest, 3.11+ names
# nothing after an expected failure or unexpected success (the line's
# start is left open). Both runners print through unittest's
# TextTestResult, so this patch, loaded with the settings, makes every
# event one "description ... status" line for both, on every version.
STATUS_LINES = """\
import unittest

_TR = unittest.TextTestResult
_BASE = unittest.TestResult


def _line(self, test, status):
    if self.showAll:
        self.stream.writeln(f"{self.getDescription(test)} ... {status}")
        self.stream.flush()


def startTest(self, test):
    _BASE.startTest(self, test)


def addSuccess(self, test):
    _BASE.addSuccess(self, test)
    _line(self, test, "ok")


def addError(self, test, err):
    _BASE.addError(self, test, err)
    _line(self, test, "ERROR")


def addFailure(self, test, err):
    _BASE.addFailure(self, test, err)
    _line(self, test, "FAIL")


def addSkip(self, test, reason):
    _BASE.addSkip(self, test, reason)
    _line(self, test, f"skipped {reason!r}")


def addExpectedFailure(self, test, err):
    _BASE.addExpectedFailure(self, test, err)
    _line(self, test, "expected failure")


def addUnexpectedSuccess(self, test):
    _BASE.addUnexpectedSuccess(self, test)
    _line(self, test, "unexpected success")


def addSubTest(self, test, subtest, err):
    _BASE.addSubTest(self, test, subtest, err)
    if err is not None:
        failed = issubclass(err[0], test.failureException)
        _line(self, subtest, "FAIL" if failed else "ERROR")


for _name, _value in list(globals().items()):
    if _name.startswith(("start", "add")):
        setattr(_TR, _name, _value)
"""

MODELS = """\
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=20)
"""

MIGRATION = """\
from django.db import migrations, models


def seed(apps, schema_editor):
    apps.get_model("dapp", "Item").objects.create(name="seed")


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=20)),
            ],
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
"""

# Shared by the generated modules: output, faults, database checks.
HELPERS = f"""\
import ctypes
import os
import signal
import subprocess
import sys
import time

MARK = {MARK!r}


def emit(kinds, where):
    for kind in kinds:
        sys.stdout.flush()
        if kind == "print":
            print(MARK, "print", where)
        elif kind == "buffer":
            sys.stdout.buffer.write(f"{{MARK}} buffer {{where}}\\n".encode())
        elif kind == "oswrite":
            os.write(1, f"{{MARK}} oswrite {{where}}\\n".encode())
        elif kind == "subprocess":
            code = f"print({{MARK!r}}, 'subprocess', {{where!r}})"
            subprocess.run([sys.executable, "-c", code], check=True)
        elif kind == "badbytes":
            os.write(1, f"{{MARK}} bad {{where}} ".encode() + b"\\xff\\xfe\\xc3(\\n")
        elif kind == "stderr":
            sys.stderr.write(f"{{MARK}} stderr {{where}}\\n")
        sys.stdout.flush()
        sys.stderr.flush()


def fault(kind):
    sys.stdout.flush()
    if kind == "exit":
        os._exit(3)
    elif kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "segfault":
        ctypes.string_at(0)
    elif kind == "hang":
        time.sleep(600)
    raise AssertionError(f"fault {{kind!r}} did not end the process")


def check_testcase(test):
    from dapp.models import Item

    test.assertTrue(
        Item.objects.filter(name="seed").exists(),
        "the data migration's row is missing in a TestCase",
    )
    Item.objects.create(name="testcase")


def check_transaction(test):
    from dapp.models import Item

    Item.objects.create(name="transaction")
    test.assertEqual(
        Item.objects.filter(name="transaction").count(),
        1,
        "rows of an earlier TransactionTestCase were not flushed",
    )
"""


def _fixture_code(what: str, oracle: bool) -> list[str]:
    """Lines a fixture runs for ``what`` (FIXTURE_OUTCOMES or fault:kind)."""
    if what == "error":
        return ['raise RuntimeError("planned fixture error")']
    if what == "skip":
        return ['raise unittest.SkipTest("planned fixture skip")']
    if what.startswith("fault:"):
        if oracle:
            return [f'raise RuntimeError("fault {what[6:]}")']
        return [f"_h.fault({what[6:]!r})"]
    return []


def _test_code(cls: ClassSpec, test: TestSpec, module: str, oracle: bool) -> str:
    where = f"{module}.{cls.name}.{test.name}"
    decorators = []
    if test.outcome == "skip":
        decorators.append('@unittest.skip("planned skip")')
    if test.outcome in ("xfail", "xpass"):
        decorators.append("@unittest.expectedFailure")
    body = []
    if test.output:
        body.append(f"_h.emit({test.output!r}, {where!r})")
    if cls.kind == "TestCase":
        body.append("_h.check_testcase(self)")
    elif cls.kind == "TransactionTestCase":
        body.append("_h.check_transaction(self)")
    if test.fault:
        body.append(
            f'raise RuntimeError("fault {test.fault}")'
            if oracle
            else f"_h.fault({test.fault!r})"
        )
    elif test.outcome in ("fail", "xfail"):
        body.append('self.fail("planned failure")')
    elif test.outcome == "error":
        body.append('raise RuntimeError("planned error")')
    elif test.outcome == "skip_in_body":
        body.append('self.skipTest("planned skip in body")')
    elif test.outcome == "subtests":
        for i, sub in enumerate(test.subtests):
            body.append(f"with self.subTest(i={i}):")
            body.append(
                "    "
                + {
                    "pass": "pass",
                    "fail": 'self.fail("planned subtest failure")',
                    "error": 'raise RuntimeError("planned subtest error")',
                    "skip": 'self.skipTest("planned subtest skip")',
                }[sub]
            )
    lines = [*decorators, f"def {test.name}(self):"]
    lines += ["    " + line for line in body or ["pass"]]
    return "\n".join(lines)


def _class_code(cls: ClassSpec, module: str, oracle: bool) -> str:
    lines = [f"class {cls.name}({cls.kind}):"]
    if cls.mp_group is not None:
        value = cls.mp_group if isinstance(cls.mp_group, str) else tuple(cls.mp_group)
        lines.append(f"    mp_group = {value!r}")
    set_up = _fixture_code(cls.fixtures.get("setUpClass", "ok"), oracle)
    if cls.output:
        set_up.insert(0, f"_h.emit({cls.output!r}, {module + '.' + cls.name!r})")
    if set_up:
        # Before super(): a class fixture that fails leaves nothing open.
        lines += ["", "    @classmethod", "    def setUpClass(cls):"]
        lines += [f"        {line}" for line in set_up]
        lines.append("        super().setUpClass()")
    tear_down = _fixture_code(cls.fixtures.get("tearDownClass", "ok"), oracle)
    if tear_down:
        # After super(): what the class opened is closed first.
        lines += ["", "    @classmethod", "    def tearDownClass(cls):"]
        lines.append("        super().tearDownClass()")
        lines += [f"        {line}" for line in tear_down]
    for test in cls.tests:
        lines.append("")
        lines.append(textwrap.indent(_test_code(cls, test, module, oracle), "    "))
    return "\n".join(lines) + "\n"


def module_code(module: ModuleSpec, oracle: bool = False) -> str:
    dotted = f"{APP}.test_{module.name}"
    parts = [
        "import unittest\n\n"
        "from django.test import SimpleTestCase, TestCase, TransactionTestCase\n\n"
        "from dapp import helpers as _h\n"
    ]
    for fixture in ("setUpModule", "tearDownModule"):
        code = _fixture_code(module.fixtures.get(fixture, "ok"), oracle)
        if code:
            parts.append(f"def {fixture}():\n" + "".join(f"    {c}\n" for c in code))
    for cls in module.classes:
        parts.append(_class_code(cls, dotted, oracle))
    return "\n\n".join(parts)


def write(case: Case, where: Path, oracle: bool = False) -> Path:
    """Write the project into the empty folder ``where``; returns it."""
    app = where / APP
    (app / "migrations").mkdir(parents=True)
    (where / "settings.py").write_text(SETTINGS)
    (where / "manage.py").write_text(MANAGE)
    (where / "statuslines.py").write_text(STATUS_LINES)
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(MODELS)
    (app / "helpers.py").write_text(HELPERS)
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(MIGRATION)
    for module in case.modules:
        (app / f"test_{module.name}.py").write_text(module_code(module, oracle))
    return where
