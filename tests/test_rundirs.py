"""concurrent_runner.rundirs: a later run removes the directories of runs
that were killed, and only those."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

from django.test import SimpleTestCase

from concurrent_runner import rundirs
from concurrent_runner.rundirs import OWNER_FILE, PREFIX


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class RunDirTestCase(SimpleTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix="rundirs-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        patcher = mock.patch.object(tempfile, "tempdir", str(self.tmp))
        patcher.start()
        self.addCleanup(patcher.stop)

    def owned_by(self, name: str, **record: object) -> Path:
        path = self.tmp / name
        path.mkdir()
        (path / "test_default.sqlite3").write_bytes(b"a copy of a test database")
        (path / OWNER_FILE).write_text(json.dumps(record))
        return path

    def remaining(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir())


class OwnerTests(RunDirTestCase):
    def test_a_new_directory_records_this_process(self) -> None:
        path = rundirs.make_run_dir()
        self.assertEqual(path.parent, self.tmp)
        self.assertTrue(path.name.startswith(PREFIX))
        self.assertEqual(oct(path.stat().st_mode & 0o777), oct(0o700))
        record = json.loads((path / OWNER_FILE).read_text())
        self.assertEqual(record["pid"], os.getpid())
        self.assertEqual(record["start"], rundirs.process_start(os.getpid()))
        self.assertIsNotNone(record["start"])  # Linux
        self.assertEqual(record["boot"], rundirs.boot_id())
        self.assertEqual(record["pidns"], rundirs.pid_namespace())
        self.assertRegex(record["pidns"], r"^pid:\[\d+\]$")
        self.assertFalse(rundirs.owner_gone(path))
        self.assertEqual([p.name for p in path.iterdir()], [OWNER_FILE])

    def test_the_start_time_field_survives_odd_command_names(self) -> None:
        fields = " ".join(str(n) for n in range(3, 53))
        self.assertEqual(rundirs.start_field(f"42 (a) (b c) {fields}"), "22")
        self.assertIsNone(rundirs.start_field("42 (short) 1 2"))


class RemoveAbandonedTests(RunDirTestCase):
    def test_only_directories_of_owners_that_are_gone_are_removed(self) -> None:
        me, started = os.getpid(), rundirs.process_start(os.getpid())
        here = {"boot": rundirs.boot_id(), "pidns": rundirs.pid_namespace()}
        self.owned_by(f"{PREFIX}alive", pid=me, start=started, **here)
        self.owned_by(f"{PREFIX}dead", pid=dead_pid(), start="1", **here)
        self.owned_by(
            f"{PREFIX}sync-dead", pid=dead_pid(), start=None, boot=None,
            pidns=here["pidns"],
        )  # fmt: skip
        # This pid, but a process that started at another time: the pid was
        # reused since.
        self.owned_by(f"{PREFIX}reused", pid=me, start="1", **here)
        self.owned_by(
            f"{PREFIX}rebooted", pid=me, start=started, boot="another",
            pidns="pid:[1]",
        )  # fmt: skip
        # Another container's process: its pid means nothing here.
        self.owned_by(
            f"{PREFIX}elsewhere", pid=dead_pid(), start="1", boot=here["boot"],
            pidns="pid:[1]",
        )  # fmt: skip
        removed = rundirs.remove_abandoned()
        self.assertEqual(
            sorted(p.name for p in removed),
            [
                f"{PREFIX}dead",
                f"{PREFIX}rebooted",
                f"{PREFIX}reused",
                f"{PREFIX}sync-dead",
            ],
        )
        self.assertEqual(self.remaining(), [f"{PREFIX}alive", f"{PREFIX}elsewhere"])

    def test_what_cannot_be_judged_is_left_alone(self) -> None:
        gone = dead_pid()
        self.owned_by("someone-else-dead", pid=gone)  # not our prefix
        (self.tmp / f"{PREFIX}being-made").mkdir()  # no record yet
        (self.tmp / f"{PREFIX}a-file").write_text(json.dumps({"pid": gone}))
        for number, record in enumerate(
            ("{", "[]", '{"pid": 0}', '{"pid": -1}', '{"pid": true}', '{"pid": "1"}')
        ):
            path = self.tmp / f"{PREFIX}odd-{number}"
            path.mkdir()
            (path / OWNER_FILE).write_text(record)
        before = self.remaining()
        self.assertEqual(rundirs.remove_abandoned(), [])
        self.assertEqual(self.remaining(), before)

    def test_a_symlink_is_not_followed(self) -> None:
        target = self.owned_by("target", pid=dead_pid(), pidns=rundirs.pid_namespace())
        (self.tmp / f"{PREFIX}link").symlink_to(target)
        self.assertEqual(rundirs.remove_abandoned(), [])
        self.assertTrue((target / "test_default.sqlite3").exists())

    def test_other_users_directories_are_left_alone(self) -> None:
        path = self.owned_by(
            f"{PREFIX}theirs", pid=dead_pid(), pidns=rundirs.pid_namespace()
        )
        if os.getuid() == 0:
            os.chown(path, 65534, 65534)
        else:
            # Seen as another user's: this user is not its owner.
            patcher = mock.patch("os.getuid", return_value=os.getuid() + 1)
            patcher.start()
            self.addCleanup(patcher.stop)
        self.assertEqual(rundirs.remove_abandoned(), [])
        self.assertTrue(path.exists())

    def test_a_new_run_directory_clears_the_dead_ones_first(self) -> None:
        self.owned_by(f"{PREFIX}dead", pid=dead_pid(), pidns=rundirs.pid_namespace())
        path = rundirs.make_run_dir()
        self.assertEqual(self.remaining(), [path.name])
