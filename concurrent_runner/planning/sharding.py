"""``--shard K/N``: a deterministic part of the suite, for one CI machine.

Groups stay whole (a class without a group is a group of its own), and are
dealt to shards longest first, each to the lightest shard so far, so shards
finish close together. Every shard computes the same split from the same
units and estimates, so the union of all shards is the whole suite, exactly
once; ``fingerprint`` names what a split was computed from, so that shards
can be compared. A sharded run never changes the durations file it plans
from (see ``durations.recording_path``). Sharding is only ever asked for:
``--shard auto`` reads the CI variables, their mere presence does nothing.
Pure functions only, but for ``resolve_shard`` reading the environment.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ConfigurationError
from .groups import Unit

#: Variables GitLab (and others) set for ``parallel:`` jobs; 1-based index.
CI_INDEX, CI_TOTAL = "CI_NODE_INDEX", "CI_NODE_TOTAL"
#: ``--shard auto``: take the shard from CI_INDEX and CI_TOTAL.
AUTO = "auto"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (from 1) of ``total``; ``source`` says where it came
    from when that was not ``--shard K/N`` itself."""

    index: int
    total: int
    source: str = ""

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def parse_shard(value: str) -> tuple[int, int]:
    """``"K/N"`` with 1 <= K <= N, for argparse."""
    try:
        index, total = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not K/N (this machine's shard K of N, e.g. 2/4) or {AUTO!r}"
        ) from None
    if not 1 <= index <= total:
        raise argparse.ArgumentTypeError(f"{value!r}: the shard K/N needs 1 <= K <= N")
    return index, total


def shard_argument(value: str) -> tuple[int, int] | str:
    """``--shard``: ``K/N``, or ``auto`` (read from the CI variables when the
    runner starts)."""
    return AUTO if value == AUTO else parse_shard(value)


def resolve_shard(
    value: Shard | tuple[int, int] | str | None,
    environ: Mapping[str, str] = os.environ,
) -> Shard | None:
    """The shard a run was asked for, or None: ``K/N`` (a tuple or the
    string), or ``auto`` for the CI variables. Bad values, from a caller or
    from the variables, are a ConfigurationError that names them."""
    if value is None or isinstance(value, Shard):
        return value
    if value == AUTO:
        return shard_from_environ(environ)
    if isinstance(value, str):
        try:
            value = parse_shard(value)
        except argparse.ArgumentTypeError as exc:
            raise ConfigurationError(f"shard {exc}") from None
    try:
        index, total = value
        valid = 1 <= index <= total
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigurationError(
            f"shard={value!r} is not a shard K of N: pass (K, N) with "
            f"1 <= K <= N, the string 'K/N', or {AUTO!r}."
        )
    return Shard(int(index), int(total))


def shard_from_environ(environ: Mapping[str, str] = os.environ) -> Shard:
    """``--shard auto``: the shard CI_NODE_INDEX and CI_NODE_TOTAL name."""
    missing = [name for name in (CI_INDEX, CI_TOTAL) if not environ.get(name)]
    if missing:
        raise ConfigurationError(
            f"--shard {AUTO} takes the shard from the {CI_INDEX} and {CI_TOTAL} "
            f"environment variables, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set. Set both (GitLab's "
            f"parallel: does), or pass --shard K/N."
        )
    raw_index, raw_total = environ[CI_INDEX], environ[CI_TOTAL]
    try:
        index, total = int(raw_index), int(raw_total)
        valid = 1 <= index <= total
    except ValueError:
        valid = False
    if not valid:
        raise ConfigurationError(
            f"--shard {AUTO}: {CI_INDEX}={raw_index!r} and {CI_TOTAL}="
            f"{raw_total!r} do not name a shard K of N: they must be whole "
            f"numbers with 1 <= {CI_INDEX} <= {CI_TOTAL} ({CI_INDEX} counts "
            f"from 1, as GitLab's does). Fix them, or pass --shard K/N."
        )
    return Shard(index, total, f"{CI_INDEX}={index}, {CI_TOTAL}={total}")


def group_key(unit: Unit) -> str:
    return f"group:{unit.group}" if unit.group else unit.key


def shard_units(
    units: Sequence[Unit], estimates: Sequence[float], index: int, total: int
) -> list[int]:
    """Indices of the units shard ``index`` (1-based) of ``total`` runs."""
    members: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        members.setdefault(group_key(unit), []).append(i)
    weight = {key: sum(estimates[i] for i in idx) for key, idx in members.items()}
    load = [0.0] * total
    chosen: list[int] = []
    for key in sorted(members, key=lambda k: (-weight[k], members[k][0])):
        target = min(range(total), key=lambda s: (load[s], s))
        load[target] += weight[key]
        if target == index - 1:
            chosen.extend(members[key])
    return sorted(chosen)


def fingerprint(
    units: Sequence[Unit],
    estimates: Sequence[float],
    total: int,
    test_ids: Sequence[str],
) -> str:
    """A short name for what a split is computed from: the number of
    shards, the units in order (groups, classes, the ids of their tests)
    and their estimates. Shards that show the same fingerprint split one
    suite alike."""
    digest = hashlib.sha256(f"{total}\n".encode())
    for unit, estimate in zip(units, estimates, strict=True):
        tests = "\t".join(test_ids[i] for i in unit.indices)
        line = (
            f"{group_key(unit)}\t{unit.key}\t{','.join(unit.classes)}\t"
            f"{float(estimate)!r}\t{tests}\n"
        )
        digest.update(line.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class ShardSelection:
    """What shard ``shard`` runs of a suite, and what the split came from."""

    shard: Shard
    units: list[int]  # indices into the suite's units
    tests: list[int]  # indices into the suite's tests, in suite order
    total_units: int
    total_tests: int
    fingerprint: str

    def summary(self, recorded: int, durations_file: object) -> str:
        """The lines a sharded run prints: what it runs, and what its split
        was computed from (``recorded`` classes with a duration in
        ``durations_file``, the others estimated by their test counts)."""
        source = f" (--shard {AUTO}: {self.shard.source})" if self.shard.source else ""
        basis = (
            f"{recorded} recorded duration(s) from {durations_file}"
            if recorded
            else "test counts (no recorded durations)"
        )
        return (
            f"Shard {self.shard}{source}: {len(self.tests)} of {self.total_tests} "
            f"test(s), {len(self.units)} of {self.total_units} unit(s).\n"
            f"Shard split {self.fingerprint}: from {self.total_units} unit(s) "
            f"estimated by {basis}. Every shard of one run must show the "
            f"same split."
        )


def select(
    shard: Shard,
    units: Sequence[Unit],
    estimates: Sequence[float],
    test_ids: Sequence[str],
) -> ShardSelection:
    """The part of the suite (``test_ids``, split into ``units``) that
    ``shard`` runs."""
    chosen = shard_units(units, estimates, shard.index, shard.total)
    return ShardSelection(
        shard,
        chosen,
        sorted(i for u in chosen for i in units[u].indices),
        len(units),
        len(test_ids),
        fingerprint(units, estimates, shard.total, test_ids),
    )
