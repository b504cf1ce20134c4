"""Several aliases, a test mirror, serialized_rollback and available_apps."""

import json
import os
import re

from django.db import connections
from django.test import TransactionTestCase, tag

from concurrent_runner import ConcurrentTestMixin

from .models import Item

CLONE = re.compile(r"_\d+(\.sqlite3)?$")


def expect_own_database(testcase, alias):
    """Under --parallel-groups N (EXPECT_WORKERS=N) every alias is the
    slot's own: its clone, but on slot N the test database itself, which
    with --keepdb (EXPECT_KEEPDB=1) no worker touches."""
    name = str(connections[alias].settings_dict["NAME"])
    testcase.assertIn("test", name)
    workers = os.environ.get("EXPECT_WORKERS")
    if not workers:
        return
    slot = json.loads(os.environ["CONCURRENT_RUNNER_WORKER"])["slot"]
    if record := os.environ.get("RECORD_DATABASES"):
        with open(record, "a") as f:
            f.write(f"{slot} {alias} {name}\n")
    if slot == int(workers) and os.environ.get("EXPECT_KEEPDB") != "1":
        testcase.assertNotRegex(name, CLONE)
    else:
        testcase.assertRegex(name, rf"_{slot}(\.sqlite3)?$")


@tag("all")
class AllDatabases(TransactionTestCase):
    databases = "__all__"
    # Restore the seeded rows (and keep content types out of post_migrate)
    # so that the order of classes does not matter.
    serialized_rollback = True

    def test_each_alias_is_the_slots_own(self):
        for alias in ("default", "other"):
            expect_own_database(self, alias)
        self.assertNotEqual(
            connections["default"].settings_dict["NAME"],
            connections["other"].settings_dict["NAME"],
        )

    def test_writes_stay_in_their_database(self):
        Item.objects.create(name="a")
        Item.objects.using("other").create(name="b")
        # Earlier TransactionTestCase flushes may have removed "seeded".
        self.assertEqual(
            set(Item.objects.exclude(name="seeded").values_list("name", flat=True)),
            {"a"},
        )
        self.assertEqual(
            set(
                Item.objects.using("other")
                .exclude(name="seeded")
                .values_list("name", flat=True)
            ),
            {"b"},
        )

    def test_mirror_reads_default(self):
        self.assertEqual(
            connections["replica"].settings_dict["NAME"],
            connections["default"].settings_dict["NAME"],
        )
        Item.objects.create(name="mirrored")
        self.assertTrue(Item.objects.using("replica").filter(name="mirrored").exists())


class SerializedRollback(TransactionTestCase):
    """Both tests delete the seeded row; serialized_rollback restores it."""

    serialized_rollback = True

    def test_first(self):
        self.assertTrue(Item.objects.filter(name="seeded").exists())
        Item.objects.all().delete()

    def test_second(self):
        self.assertTrue(Item.objects.filter(name="seeded").exists())
        Item.objects.all().delete()


class AvailableApps(TransactionTestCase):
    available_apps = ["multidb"]
    serialized_rollback = True

    def test_only_multidb(self):
        expect_own_database(self, "default")
        Item.objects.create(name="x")
        self.assertEqual(Item.objects.filter(name="x").count(), 1)


def write_both(name):
    Item.objects.create(name=name)
    Item.objects.using("other").create(name=name)
    return {
        alias: str(connections[alias].settings_dict["NAME"]) for alias in connections
    }


class ConcurrentCallsOnEveryAlias(ConcurrentTestMixin, TransactionTestCase):
    databases = "__all__"
    serialized_rollback = True

    def test_calls_use_this_tests_databases(self):
        Item.objects.using("other").exists()  # the test uses "other" too
        results = self.make_concurrent_calls(
            (write_both, {"name": "from call 1"}), (write_both, {"name": "from call 2"})
        )
        self.assertEqual(results.errors, [])
        mine = {a: str(connections[a].settings_dict["NAME"]) for a in connections}
        self.assertEqual(results, [mine, mine])
        expect_own_database(self, "other")
        for alias in ("default", "other"):
            self.assertEqual(
                set(Item.objects.using(alias).filter(name__startswith="from call")
                    .values_list("name", flat=True)),
                {"from call 1", "from call 2"},
            )  # fmt: skip
