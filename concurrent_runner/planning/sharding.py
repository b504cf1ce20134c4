"""``--shard K/N``: a deterministic part of the suite, for one CI machine.

Groups stay whole (a class without a group is a group of its own), and are
dealt to shards longest first, each to the lightest shard so far, so shards
finish close together. Every shard computes the same split from the same
suite and durations file, so the union of all shards is the whole suite,
exactly once. Pure functions only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence

from .groups import Unit

#: Variables GitLab (and others) set for ``parallel:`` jobs; 1-based index.
CI_INDEX, CI_TOTAL = "CI_NODE_INDEX", "CI_NODE_TOTAL"


def parse_shard(value: str) -> tuple[int, int]:
    """``"K/N"`` with 1 <= K <= N, for argparse."""
    try:
        index, total = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not K/N (this machine's shard K of N, e.g. 2/4)"
        ) from None
    if not 1 <= index <= total:
        raise argparse.ArgumentTypeError(f"{value!r}: the shard K/N needs 1 <= K <= N")
    return index, total


def shard_from_environ(
    environ: Mapping[str, str] = os.environ,
) -> tuple[int, int] | None:
    if CI_INDEX in environ and CI_TOTAL in environ:
        return parse_shard(f"{environ[CI_INDEX]}/{environ[CI_TOTAL]}")
    return None


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
