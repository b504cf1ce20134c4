"""Durations of earlier runs, per test class and per test, in a JSON file.

The file (``.concurrent_runner_durations.json`` in the working directory by
default, or ``settings.CONCURRENT_RUNNER_DURATIONS_FILE``) maps class labels
to seconds (``classes``: a class's whole time, its fixtures included) and
test ids to seconds (``tests``), from which a class's fixture time and the
chunks of a long class are estimated (``planning.splitting``). It only
steers scheduling: deleting it is always safe, and a corrupt or foreign
file is ignored rather than failing the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .groups import Unit

if TYPE_CHECKING:
    from .sharding import Shard

FORMAT_VERSION = 1


def durations_path() -> Path:
    from ..conf import durations_file

    return durations_file()


def recording_path(path: Path, shard: Shard | None) -> Path:
    """Where a run merges the durations it measured: ``path`` itself, or,
    for a sharded run, a file of its own beside it
    (``.concurrent_runner_durations.shard-2-of-4.json``), so that the file
    every shard plans from stays as it was and all shards split alike.
    ``python -m concurrent_runner durations merge`` folds these in."""
    if shard is None or (path.exists() and not path.is_file()):
        return path  # os.devnull turns recording off, for shards too
    suffix = path.suffix or ".json"
    return path.with_name(f"{path.stem}.shard-{shard.index}-of-{shard.total}{suffix}")


def load(path: Path) -> dict[str, float]:
    """The class durations in ``path``; ``{}`` for a missing, corrupt or
    foreign file, without the entries that are not a finite number of
    seconds."""
    return _section(_read(path), "classes")


def load_both(path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """``load(path)``, and the test durations in ``path`` (test id ->
    seconds, read the same way: what splitting a class into chunks is
    decided from), from one read of the file."""
    data = _read(path)
    return _section(data, "classes"), _section(data, "tests")


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        # ValueError: not JSON, not UTF-8, or an int of more digits than
        # Python parses; RecursionError: nested deeper than json can read.
        return {}
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        return {}
    return data


def _section(data: Mapping[str, object], name: str) -> dict[str, float]:
    entries = data.get(name, {})
    if not isinstance(entries, dict):
        return {}
    loaded = {}
    for label, value in entries.items():
        seconds = _seconds(value)
        if seconds is not None:
            loaded[str(label)] = seconds
    return loaded


def _seconds(value: object) -> float | None:
    """``value`` as seconds, or None if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def save(
    path: Path,
    measured: Mapping[str, float],
    tests: Mapping[str, float] | None = None,
) -> None:
    """Merge ``measured`` (per class) and ``tests`` (per test id) into the
    file, atomically (a reader never sees half)."""
    if not measured and not tests:
        return
    if os.path.exists(path) and not os.path.isfile(path):
        # os.devnull (a way to turn the file off) or a directory: replacing
        # it would destroy it, or fail and leave the temp file behind.
        return
    data = _read(path)
    classes = _section(data, "classes") | dict(measured)
    merged_tests = _section(data, "tests") | dict(tests or {})
    # A read-only checkout must not fail the run; scheduling just stays
    # uninformed.
    with contextlib.suppress(OSError):
        write(path, classes, merged_tests)


def write(
    path: Path,
    classes: Mapping[str, float],
    tests: Mapping[str, float] | None = None,
) -> None:
    """Write ``classes`` (and ``tests``, when there are any) as the
    durations file ``path``, atomically; raises OSError (and leaves no
    temporary file) when it cannot."""
    rounded = {k: round(v, 4) for k, v in sorted(classes.items())}
    payload: dict[str, object] = {"version": FORMAT_VERSION, "classes": rounded}
    if tests:
        payload["tests"] = {k: round(v, 4) for k, v in sorted(tests.items())}
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def estimate(
    units: Sequence[Unit],
    tests_per_class: Mapping[str, int],
    history: Mapping[str, float],
) -> list[float]:
    """Expected seconds per unit.

    Known classes use their recorded time. Unknown ones count their tests,
    scaled by the mean time per test of the known classes so that both kinds
    compare; with no history at all the estimate is the number of tests.
    """
    known_time = sum(history[c] for c in tests_per_class if c in history)
    known_tests = sum(n for c, n in tests_per_class.items() if c in history)
    per_test = known_time / known_tests if known_tests and known_time > 0 else 1.0

    def class_estimate(label: str) -> float:
        if label in history:
            return history[label]
        return tests_per_class.get(label, 1) * per_test

    return [sum(class_estimate(c) for c in unit.classes) for unit in units]


@dataclass
class Merged:
    """What ``merge`` did: the sources that held durations, the ones that
    did not (each with why), and how many classes the target now has."""

    merged: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    classes: int = 0


def merge(target: Path, sources: Sequence[Path]) -> Merged:
    """Merge durations files (say, one per CI shard) into ``target``, later
    ones winning for a class found in several. ``target`` is written only
    when a source holds durations; OSError if it cannot be."""
    result = Merged()
    classes, tests = load_both(target)
    for source in sources:
        found, found_tests = load_both(source)
        if found:
            classes.update(found)
            tests.update(found_tests)
            result.merged.append(source)
        elif not source.exists():
            result.skipped.append((source, "no such file"))
        elif not source.is_file():
            result.skipped.append((source, "not a file"))
        else:
            result.skipped.append((source, "no durations in it"))
    if result.merged:
        write(target, classes, tests)
        result.classes = len(classes)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m concurrent_runner durations merge OUT IN [IN ...]``: 0 when
    OUT was written, 1 when no IN held durations (nothing to merge: a CI
    step that lost the shards' files fails instead of passing) or OUT could
    not be written."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m concurrent_runner")
    commands = parser.add_subparsers(dest="command", required=True)
    durations = commands.add_parser("durations", help="the durations file")
    actions = durations.add_subparsers(dest="action", required=True)
    merging = actions.add_parser(
        "merge",
        help="merge durations files into OUT",
        description=(
            "Merge the durations files IN (say, one per CI shard) into OUT, "
            "later ones winning for a class found in several. Fails (exit "
            "code 1) when none of them holds durations."
        ),
    )
    merging.add_argument("out", type=Path, metavar="OUT")
    merging.add_argument("sources", type=Path, nargs="+", metavar="IN")
    args = parser.parse_args(argv)
    prog = "durations merge"
    if args.out.exists() and not args.out.is_file():
        print(f"{prog}: OUT {str(args.out)!r} is not a file.", file=sys.stderr)
        return 1
    try:
        result = merge(args.out, args.sources)
    except OSError as exc:
        print(f"{prog}: could not write {str(args.out)!r}: {exc}", file=sys.stderr)
        return 1
    for source, why in result.skipped:
        print(f"{prog}: skipped {str(source)!r}: {why}.", file=sys.stderr)
    if not result.merged:
        print(
            f"{prog}: nothing to merge: none of the {len(args.sources)} file(s) "
            f"given holds durations, so {str(args.out)!r} is left as it was. "
            f"Check the paths: a shell pattern that matches nothing is passed "
            f"on as it is written, and on CI the shards' files must be kept "
            f"(artifacts; on GitHub with include-hidden-files, as their names "
            f"start with a dot).",
            file=sys.stderr,
        )
        return 1
    print(
        f"Merged the durations of {len(result.merged)} file(s) into "
        f"{str(args.out)!r}: {result.classes} class(es)."
    )
    return 0
