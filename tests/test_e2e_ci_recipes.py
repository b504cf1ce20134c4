"""End-to-end: the CI recipes of docs/ci/ work as written.

Each recipe is parsed, then run here twice, as two pipelines one after the
other (``ci_emulation``): its shard jobs run the example project's suite
for real, then its merge job merges their durations. Across the shards
every test ran exactly once (their JUnit reports), all shards of a pipeline
computed the same split, the merged durations file has every class, and
the second pipeline's shards plan from it.

Needs PyYAML (.ci/run installs it; in CI a missing one fails these tests).
"""

from __future__ import annotations

import collections
import copy
import importlib.util
import json
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from django.test import SimpleTestCase, tag

from .ci_emulation import (
    GitHubPipeline,
    GitLabPipeline,
    Pipeline,
    RecipeError,
    Store,
)
from .e2e import EXAMPLE_PROJECT, ROOT

RECIPES = ROOT / "docs" / "ci"
DURATIONS = ".concurrent_runner_durations.json"
SHARD = re.compile(r"^Shard (\d+)/(\d+)\b.*: (\d+) of (\d+) test\(s\)", re.MULTILINE)
SPLIT = re.compile(
    r"^Shard split (\w+): from \d+ unit\(s\) estimated by (.*?)\. Every shard", re.M
)


class RecipeCase(SimpleTestCase):
    recipe = ""

    def setUp(self):
        if importlib.util.find_spec("yaml") is None:
            if os.environ.get("CI"):
                self.fail("PyYAML is not installed; .ci/run installs it")
            self.skipTest("PyYAML is not installed")
        self.tmp = Path(tempfile.mkdtemp(prefix="ci-recipe-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def load(self) -> dict[Any, Any]:
        import yaml

        return yaml.safe_load((RECIPES / self.recipe).read_text())

    def check_pipeline(
        self, pipeline: Pipeline, junit: list[bytes], merged: bytes, first: bool
    ) -> None:
        shards = pipeline.runs("manage.py test")
        self.assertEqual(len(shards), 4, [c.command for c in pipeline.commands])
        fingerprints, totals, ran = set(), set(), 0
        for number, shard in enumerate(shards, 1):
            (line,) = SHARD.findall(shard.output)
            self.assertEqual(line[:2], (str(number), "4"), shard.output)
            ran += int(line[2])
            totals.add(int(line[3]))
            (split,) = SPLIT.findall(shard.output)
            fingerprints.add(split[0])
        (total,) = totals
        # One split, the same in every shard; the shards' parts add up.
        self.assertEqual(len(fingerprints), 1, fingerprints)
        self.assertEqual(ran, total)
        # Every test ran exactly once, across the shards' JUnit reports.
        self.assertEqual(len(junit), 4)
        ids = collections.Counter(
            f"{case.get('classname')}.{case.get('name')}"
            for report in junit
            for case in ET.fromstring(report).iter("testcase")
        )
        self.assertEqual([i for i, n in ids.items() if n > 1], [])
        self.assertEqual(len(ids), total)
        # The merged durations have every class that ran.
        classes = {test_id.rsplit(".", 1)[0] for test_id in ids}
        self.assertEqual(set(json.loads(merged)["classes"]), classes)
        for shard in shards:
            (split,) = SPLIT.findall(shard.output)
            if first:
                self.assertEqual(split[1], "test counts (no recorded durations)")
            else:
                # Planned from the durations the first pipeline left.
                self.assertRegex(
                    split[1],
                    rf"^{len(classes)} recorded duration\(s\) from .*/{DURATIONS}$",
                )


@tag("any_database")
class GitHubActionsTests(RecipeCase):
    recipe = "github-actions.yml"

    def test_the_workflow_as_written(self):
        workflow = self.load()
        self.assertIn("push", workflow.get("on", workflow.get(True)))  # YAML 1.1: on
        jobs = workflow["jobs"]
        for name, job in jobs.items():
            self.assertIn("runs-on", job, name)
        test = jobs["test"]
        self.assertEqual(test["strategy"]["matrix"]["shard"], [1, 2, 3, 4])
        self.assertFalse(test["strategy"]["fail-fast"])
        self.assertRegex(test["services"]["postgres"]["image"], r"^postgres:")
        uses = {step.get("uses", "").partition("@")[0] for step in test["steps"]}
        self.assertLessEqual({"actions/checkout", "actions/setup-python"}, uses)

        store = Store()
        for run_id in (1, 2):
            pipeline = GitHubPipeline(
                workflow, EXAMPLE_PROJECT, self.tmp, store, run_id
            )
            pipeline.run()
            junit = [
                content
                for name, files in store.artifacts.items()
                if name.startswith("junit-")
                for content in files.values()
            ]
            merged = store.caches[f"test-durations-{run_id}-1"][DURATIONS]
            self.check_pipeline(pipeline, junit, merged, first=run_id == 1)

    def test_shards_files_left_out_fail_the_merge(self):
        # upload-artifact leaves hidden files out by default: without
        # include-hidden-files the merge finds no shard's file, and fails.
        workflow = copy.deepcopy(self.load())
        for step in workflow["jobs"]["test"]["steps"]:
            if step.get("name") == "Keep this shard's durations":
                del step["with"]["include-hidden-files"]
            if step.get("name") == "Test":  # a shard's file, without the suite
                step["run"] = (
                    'echo \'{"version": 1, "classes": {"a.B": 1.0}}\' > '
                    ".concurrent_runner_durations.shard-${{ matrix.shard }}"
                    "-of-${{ strategy.job-total }}.json"
                )
        pipeline = GitHubPipeline(workflow, EXAMPLE_PROJECT, self.tmp, Store(), 1)
        with self.assertRaisesRegex(RecipeError, "durations merge") as caught:
            pipeline.run()
        self.assertIn("exit code 1", str(caught.exception))
        self.assertIn("nothing to merge", str(caught.exception))


@tag("any_database")
class GitLabCITests(RecipeCase):
    recipe = "gitlab-ci.yml"

    def test_the_pipeline_as_written(self):
        config = self.load()
        self.assertEqual(config["test"]["parallel"], 4)
        self.assertRegex(config["test"]["services"][0], r"^postgres:")
        self.assertIn("junit", config["test"]["artifacts"]["reports"])

        store = Store()
        for number in (1, 2):
            pipeline = GitLabPipeline(config, EXAMPLE_PROJECT, self.tmp, store, number)
            pipeline.run()
            junit = [
                content
                for name, files in store.artifacts.items()
                if name.startswith("test ")
                for content in files.values()
            ]
            merged = store.caches["test-durations"][DURATIONS]
            self.check_pipeline(pipeline, junit, merged, first=number == 1)
