"""Run the CI recipes of docs/ci/ here, job after job, as their CI would.

Their shell commands run for real (through the e2e harness: bounded,
nothing left behind), in a fresh copy of the project per job, as a CI
checkout is. What the CI itself provides is emulated as GitHub and GitLab
document it, and only that: GitHub's actions/checkout, setup-python,
cache (restore, save), upload-artifact (hidden files left out unless
``include-hidden-files``, an existing name refused) and download-artifact
(``name``, ``pattern``, ``merge-multiple``), ``${{ }}`` expressions of the
matrix, strategy and run; GitLab's stages, ``needs``, ``parallel``
(``CI_NODE_INDEX``, ``CI_NODE_TOTAL``), ``cache`` policies and artifacts.
Anything else a recipe uses is an error, so that a recipe cannot rely on
what its test does not check.

Not run: installing (``pip install``: this checkout is the package) and
the database service (the suite's own database stands in: SQLite, or the
local server).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .e2e import Run, start

#: What a job's commands may not run here: the CI's package installs.
SKIPPED = re.compile(r"^(python -m )?pip install\b")


class RecipeError(AssertionError):
    """The recipe uses what the emulation does not know, or fails."""


@dataclass
class Command:
    job: str
    command: str
    run: Run | None  # None: skipped (an install)


@dataclass
class Store:
    """What outlives a job: caches (across pipelines) and one pipeline's
    artifacts; each is relative path -> content."""

    caches: dict[str, dict[str, bytes]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    #: GitLab: a job instance's artifacts, by job name.
    job_artifacts: dict[str, list[dict[str, bytes]]] = field(default_factory=dict)

    def new_pipeline(self) -> None:
        self.artifacts.clear()
        self.job_artifacts.clear()


def local_database_env() -> dict[str, str]:
    """The suite's own database in place of the recipe's service."""
    vendor = os.environ.get("DB_VENDOR", "sqlite")
    user = {"postgresql": "postgres", "mysql": "root"}.get(vendor, "")
    port = {"postgresql": "5432", "mysql": "3306"}.get(vendor, "")
    return {
        "DB_VENDOR": vendor,
        "DB_HOST": os.environ.get("DB_HOST", "127.0.0.1"),
        "DB_PORT": os.environ.get("DB_PORT", port),
        "DB_USER": os.environ.get("DB_USER", user),
        "DB_PASSWORD": os.environ.get("DB_PASSWORD", ""),
    }


def copy_project(project: Path, workspace: Path) -> None:
    """A checkout: the project's files, not what runs left in it."""
    shutil.copytree(
        project,
        workspace,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(
            "__pycache__", "*.sqlite3", ".concurrent_runner_*", ".coverage*"
        ),
    )


def files_matching(root: Path, pattern: str, *, hidden: bool) -> dict[str, bytes]:
    """Files under ``root`` whose relative path matches ``pattern``; those
    with a component starting with a dot only if ``hidden``."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or not fnmatch.fnmatchcase(relative, pattern):
            continue
        if not hidden and any(part.startswith(".") for part in relative.split("/")):
            continue
        found[relative] = path.read_bytes()
    return found


def put_files(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


class Pipeline:
    """What both CIs share: running commands, and what they ran."""

    def __init__(self, project: Path, workdir: Path, store: Store) -> None:
        self.project = project
        self.workdir = workdir
        self.store = store
        self.commands: list[Command] = []

    def shell(self, job: str, script: list[str], cwd: Path, env: dict[str, str]):
        """Run ``script``'s lines in one ``bash -e``, but for installs."""
        lines = []
        for line in script:
            if SKIPPED.match(line.strip()):
                self.commands.append(Command(job, line, None))
            else:
                lines.append(line)
        if not lines:
            return
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
        run_env = {**env, **local_database_env(), "PATH": path}
        result = start(["/bin/bash", "-ec", "\n".join(lines)], cwd=cwd, env=run_env)
        done = result.finish()
        self.commands.append(Command(job, "\n".join(lines), done))
        if done.returncode != 0:
            raise RecipeError(
                f"{job}: exit code {done.returncode} from:\n{lines}\n{done.output}"
            )

    def runs(self, text: str) -> list[Run]:
        """The runs of the commands that contain ``text``."""
        return [c.run for c in self.commands if c.run and text in c.command]


# -- GitHub Actions -------------------------------------------------------------


class GitHubPipeline(Pipeline):
    """One run of a GitHub Actions workflow."""

    def __init__(self, workflow: dict, project: Path, workdir: Path, store: Store,
                 run_id: int) -> None:  # fmt: skip
        super().__init__(project, workdir, store)
        self.workflow = workflow
        self.run_id = run_id

    def run(self) -> None:
        self.store.new_pipeline()
        for name in self.job_order():
            job = self.workflow["jobs"][name]
            matrix = job.get("strategy", {}).get("matrix", {})
            if len(matrix) > 1 or any(not isinstance(v, list) for v in matrix.values()):
                raise RecipeError(f"{name}: only a matrix of one list is emulated")
            values = next(iter(matrix.items()), (None, [None]))
            key, items = values
            for item in items:
                context = {
                    "strategy.job-total": str(len(items)),
                    "github.run_id": str(self.run_id),
                    "github.run_attempt": "1",
                }
                if key is not None:
                    context[f"matrix.{key}"] = str(item)
                self.run_job(name, job, context)

    def job_order(self) -> list[str]:
        jobs = self.workflow["jobs"]
        done: list[str] = []
        while len(done) < len(jobs):
            ready = [
                name
                for name, job in jobs.items()
                if name not in done and set(_as_list(job.get("needs"))) <= set(done)
            ]
            if not ready:
                raise RecipeError(
                    f"jobs wait on each other: {sorted(set(jobs) - set(done))}"
                )
            done.append(ready[0])
        return done

    def run_job(self, name: str, job: dict, context: dict[str, str]) -> None:
        label = f"{name} {context.get('matrix.shard', '')}".strip()
        workspace = self.workdir / f"run{self.run_id}" / label.replace(" ", "-")
        workspace.mkdir(parents=True)
        self.check_if(job.get("if"), label)
        if "runs-on" not in job:
            raise RecipeError(f"{label}: no runs-on")
        env = {
            k: self.expand(str(v), context)
            for k, v in {**self.workflow.get("env", {}), **job.get("env", {})}.items()
        }
        for step in job["steps"]:
            self.check_if(step.get("if"), label)
            if "run" in step:
                self.shell(label, [self.expand(step["run"], context)], workspace, env)
            else:
                self.use(label, step["uses"], step.get("with", {}), workspace, context)

    def check_if(self, condition: Any, label: str) -> None:
        # Nothing is cancelled here; other conditions are not emulated.
        if condition not in (None, "${{ !cancelled() }}", "${{ always() }}"):
            raise RecipeError(f"{label}: condition {condition!r} is not emulated")

    def expand(self, text: str, context: dict[str, str]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match[1].strip()
            if name not in context:
                raise RecipeError(f"expression {match[0]!r} is not emulated")
            return context[name]

        return re.sub(r"\$\{\{(.*?)\}\}", value, text)

    def use(self, label: str, uses: str, args: dict, workspace: Path,
            context: dict[str, str]) -> None:  # fmt: skip
        action, _, version = uses.partition("@")
        if not version:
            raise RecipeError(f"{label}: {uses!r} names no version")
        args = {k: self.expand(str(v), context) for k, v in args.items()}
        match action:
            case "actions/checkout":
                copy_project(self.project, workspace)
            case "actions/setup-python":
                if "python-version" not in args:
                    raise RecipeError(f"{label}: setup-python without python-version")
            case "actions/cache/restore":
                self.restore_cache(args, workspace)
            case "actions/cache/save":
                self.save_cache(label, args, workspace)
            case "actions/upload-artifact":
                self.upload(label, args, workspace)
            case "actions/download-artifact":
                self.download(label, args, workspace)
            case _:
                raise RecipeError(f"{label}: action {uses!r} is not emulated")

    def restore_cache(self, args: dict, workspace: Path) -> None:
        # The exact key, else the newest cache whose key starts with a
        # restore key, in their order.
        caches = self.store.caches
        if args["key"] in caches:
            put_files(workspace, caches[args["key"]])
            return
        for prefix in args.get("restore-keys", "").splitlines():
            hits = [key for key in caches if prefix and key.startswith(prefix)]
            if hits:
                put_files(workspace, caches[hits[-1]])  # dicts keep their order
                return

    def save_cache(self, label: str, args: dict, workspace: Path) -> None:
        if args["key"] in self.store.caches:
            return  # caches are immutable: the real action warns and goes on
        files = {}
        for path in args["path"].splitlines():
            if (workspace / path).is_file():
                files[path] = (workspace / path).read_bytes()
        if not files:
            raise RecipeError(f"{label}: nothing to cache at {args['path']!r}")
        self.store.caches[args["key"]] = files

    def upload(self, label: str, args: dict, workspace: Path) -> None:
        name = args["name"]
        if name in self.store.artifacts:
            raise RecipeError(f"{label}: artifact {name!r} exists already")
        hidden = str(args.get("include-hidden-files", "false")).lower() == "true"
        files: dict[str, bytes] = {}
        for pattern in args["path"].splitlines():
            files.update(files_matching(workspace, pattern.strip(), hidden=hidden))
        if not files:
            if args.get("if-no-files-found", "warn") == "error":
                raise RecipeError(f"{label}: no files for artifact {name!r}")
            return  # warn, ignore: no artifact
        # The artifact's root is the files' common folder.
        root = os.path.commonpath([os.path.dirname(p) or "." for p in files])
        self.store.artifacts[name] = {
            os.path.relpath(path, root): content for path, content in files.items()
        }

    def download(self, label: str, args: dict, workspace: Path) -> None:
        artifacts = self.store.artifacts
        if "name" in args:
            if args["name"] not in artifacts:
                raise RecipeError(f"{label}: artifact {args['name']!r} not found")
            names = [args["name"]]
        else:
            pattern = args.get("pattern", "*")
            names = [n for n in artifacts if fnmatch.fnmatchcase(n, pattern)]
        into = workspace / args.get("path", ".")
        merged = (
            "name" in args
            or str(args.get("merge-multiple", "false")).lower() == "true"
            or len(names) == 1
        )
        for name in names:
            put_files(into if merged else into / name, artifacts[name])


# -- GitLab CI ---------------------------------------------------------------------

#: Top-level keys of a .gitlab-ci.yml that are not jobs.
GITLAB_GLOBAL = {
    "stages", "default", "variables", "workflow", "include", "image",
    "services", "cache", "before_script", "after_script",
}  # fmt: skip


class GitLabPipeline(Pipeline):
    """One pipeline of a .gitlab-ci.yml."""

    def __init__(self, config: dict, project: Path, workdir: Path, store: Store,
                 number: int) -> None:  # fmt: skip
        super().__init__(project, workdir, store)
        self.config = config
        self.number = number

    def jobs(self) -> list[str]:
        stages = self.config.get("stages", ["build", "test", "deploy"])
        jobs = [k for k in self.config if k not in GITLAB_GLOBAL]
        for name in jobs:
            if self.config[name].get("stage", "test") not in stages:
                raise RecipeError(f"{name}: stage not in {stages}")
        return sorted(
            jobs, key=lambda n: stages.index(self.config[n].get("stage", "test"))
        )

    def run(self) -> None:
        self.store.new_pipeline()
        done: list[str] = []
        for name in self.jobs():
            job = self.config[name]
            needs = _as_list(job.get("needs", done))
            if not set(needs) <= set(done):
                raise RecipeError(f"{name}: needs {needs} before they ran")
            if job.get("when", "on_success") not in ("on_success", "always"):
                raise RecipeError(f"{name}: when: {job['when']!r} is not emulated")
            total = job.get("parallel")
            if total is not None and not isinstance(total, int):
                raise RecipeError(f"{name}: only parallel: N is emulated")
            for index in range(1, (total or 1) + 1):
                node = {"CI_NODE_INDEX": str(index), "CI_NODE_TOTAL": str(total)}
                self.run_job(name, job, needs, node if total else {})
            done.append(name)

    def run_job(
        self, name: str, job: dict, needs: list[str], node: dict[str, str]
    ) -> None:
        label = f"{name} {node.get('CI_NODE_INDEX', '')}".strip()
        workspace = self.workdir / f"pipeline{self.number}" / label.replace(" ", "-")
        workspace.mkdir(parents=True)
        copy_project(self.project, workspace)  # every job clones
        for needed in needs:
            for files in self.store.job_artifacts.get(needed, []):
                put_files(workspace, files)
        cache = job.get("cache")
        if cache and cache.get("policy", "pull-push") in ("pull", "pull-push"):
            put_files(workspace, self.store.caches.get(cache["key"], {}))
        env = {
            **{k: str(v) for k, v in self.config.get("variables", {}).items()},
            **{k: str(v) for k, v in job.get("variables", {}).items()},
            **node,
            "CI_PROJECT_DIR": str(workspace),
        }
        script = [*_as_list(job.get("before_script")), *_as_list(job["script"])]
        self.shell(label, script, workspace, env)
        if cache and cache.get("policy", "pull-push") in ("push", "pull-push"):
            files = {}
            for pattern in cache["paths"]:
                files.update(files_matching(workspace, pattern, hidden=True))
            self.store.caches[cache["key"]] = files
        artifacts = job.get("artifacts", {})
        kept: dict[str, bytes] = {}
        for pattern in artifacts.get("paths", []):
            kept.update(files_matching(workspace, pattern, hidden=True))
        reports = artifacts.get("reports", {})
        if set(reports) - {"junit"}:
            raise RecipeError(f"{label}: only JUnit reports are emulated")
        for pattern in _as_list(reports.get("junit")):
            if not files_matching(workspace, pattern, hidden=True):
                raise RecipeError(f"{label}: no JUnit report matches {pattern!r}")
            # Shown by GitLab, not handed to later jobs: kept aside.
            self.store.artifacts.update(
                {f"{label}/{k}": {k: v} for k, v in
                 files_matching(workspace, pattern, hidden=True).items()}
            )  # fmt: skip
        self.store.job_artifacts.setdefault(name, []).append(kept)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
