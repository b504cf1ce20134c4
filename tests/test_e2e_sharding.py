"""End-to-end: sharding is asked for, never implied, and shards run one
after the other on one machine cover the suite exactly once."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from django.test import SimpleTestCase, tag

from .e2e import manage, run

LABELS = ("outcomes", "multidb", "faults.stubborn")
CI_2_OF_2 = {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"}


def split_of(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Shard split ")]
    assert len(lines) == 1, output
    return lines[0].split()[2].rstrip(":")


@tag("any_database")
class ExplicitShardTests(SimpleTestCase):
    def test_ci_variables_alone_shard_nothing(self):
        whole = manage("outcomes", "-v", "2")
        with_variables = manage("outcomes", "-v", "2", env=CI_2_OF_2)
        self.assertEqual(with_variables.statuses(), whole.statuses())
        self.assertEqual(with_variables.ran, whole.ran)
        self.assertNotIn("Shard", with_variables.output)

    def test_a_named_test_runs_whatever_the_variables_say(self):
        # Shard 2 of 2 of this one test is empty: it ran 0 tests, and said OK.
        result = manage("outcomes.tests.Passing.test_write", "-v", "2", env=CI_2_OF_2)
        self.assertEqual(result.returncode, 0, result.output)
        self.assertEqual(result.ran, 1)

    def test_shard_auto_takes_the_variables_and_says_so(self):
        flag = manage("outcomes", "-v", "2", "--shard", "2/2")
        auto = manage("outcomes", "-v", "2", "--shard", "auto", env=CI_2_OF_2)
        self.assertIn(
            "Shard 2/2 (--shard auto: CI_NODE_INDEX=2, CI_NODE_TOTAL=2):", auto.output
        )
        self.assertEqual(auto.statuses(), flag.statuses())
        self.assertEqual(split_of(auto.output), split_of(flag.output))

    def test_a_bad_ci_value_is_a_clear_error(self):
        # It was a traceback. (Every other bad value: tests.test_sharding.)
        environ = {"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "2"}
        result = manage("outcomes", "--shard", "auto", env=environ)
        self.assertEqual(result.returncode, 1, result.output)
        self.assertIn("Error: --shard auto: CI_NODE_INDEX='0'", result.output)
        self.assertNotIn("Traceback", result.output)
        self.assertNotIn("Creating test database", result.output)


@tag("any_database")
class ShardsInTurnTests(SimpleTestCase):
    def test_every_shard_in_turn_runs_each_test_exactly_once(self):
        """The shards of one run, one after the other in one folder, as a
        developer would reproduce a CI run: the first shard's measurements
        must not change the split the second one computes."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            path = folder / "durations.json"
            env = {"DURATIONS_FILE": str(path)}
            whole = manage(*LABELS, "-v", "2")
            classes = sorted({i.rsplit(".", 1)[0] for i in whole.statuses()})
            # Recorded durations that the shards' own measurements would
            # overturn, had they been merged into the file the next shard
            # plans from.
            recorded = {c: 5.0 + i / 10 for i, c in enumerate(classes)}
            path.write_text(json.dumps({"version": 1, "classes": recorded}))
            before = path.read_bytes()
            seen: dict[str, int] = {}
            splits = set()
            outputs = []
            ran = 0
            for k in (1, 2):
                shard = manage(
                    *LABELS, "-v", "2", "--parallel-groups", "2", "--shard", f"{k}/2",
                    env=env,
                )  # fmt: skip
                self.assertIn(f"Shard {k}/2:", shard.output)
                outputs.append(shard.output)
                for test_id in shard.statuses():
                    seen[test_id] = seen.get(test_id, 0) + 1
                ran += shard.ran
            twice = sorted(t for t, n in seen.items() if n > 1)
            never = sorted(set(whole.statuses()) - set(seen))
            self.assertEqual((twice, never), ([], []))
            self.assertEqual(ran, whole.ran)
            for output in outputs:
                self.assertIn(f"recorded duration(s) from {path}", output)
                splits.add(split_of(output))
            self.assertEqual(len(splits), 1, "the shards split differently")
            self.assertEqual(path.read_bytes(), before, "a shard changed the file")
            # Each shard kept what it measured in a file of its own, and
            # the documented merge folds them into the file.
            shard_files = sorted(folder.glob("durations.shard-*-of-2.json"))
            self.assertEqual(
                [p.name for p in shard_files],
                ["durations.shard-1-of-2.json", "durations.shard-2-of-2.json"],
            )
            merged = run(
                ["-m", "concurrent_runner", "durations", "merge", str(path)]
                + [str(p) for p in shard_files]
            )
            self.assertEqual(merged.returncode, 0, merged.output)
            measured = [json.loads(p.read_text())["classes"] for p in shard_files]
            self.assertTrue(all(measured), measured)
            self.assertFalse(set(measured[0]) & set(measured[1]))
            self.assertEqual(
                json.loads(path.read_text())["classes"],
                {**recorded, **measured[0], **measured[1]},
            )
