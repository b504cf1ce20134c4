"""Clones kept between ``--keepdb`` runs, and how a run knows it may use one.

Django keeps its parallel clones under ``--keepdb`` but never checks them
against the test database, so a new migration leaves them stale. Here every
kept clone carries a *record*, stored with the clone itself so that it lives
and dies with it: a PostgreSQL ``COMMENT ON DATABASE``, a MariaDB database
``COMMENT``, a file beside an SQLite clone. It says:

- ``making``: the clone is being (re)made; never used;
- ``in-use``: a run is testing on it, or ended without saying how it left
  it (killed); never used;
- ``ready``: a run ended normally on it; with the *fingerprint* of the test
  database it was cloned from, and whether a ``TransactionTestCase`` left it
  flushed.

A run uses a kept clone only if its record is ``ready`` and its fingerprint
is the test database's now (the applied migrations, the tables and their row
counts, and the serialized contents where both runs have them). The record
is set to ``in-use`` before any worker touches the clone and to ``ready``
only at the end of a run that was not interrupted, from what the workers
reported; a clone is marked ``making`` before it is dropped and made again,
and ``in-use`` only once it is complete. A database named like a clone with
no record at all is not ours: ``clones.clear_old_clones`` asks about it.

MySQL has no database comments and an SQLite file standing in for an
in-memory test database lives in the run's own directory: their clones are
made afresh every run, as without ``--keepdb``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections

#: Every record starts with this; anything else is not ours.
MAGIC = "concurrent-runner-clone"
#: What a record may hold: it is written into SQL as a literal.
_SAFE = re.compile(r"^[a-z0-9 =_.-]*$")
SIDECAR_SUFFIX = ".clone-state"


@dataclass(frozen=True)
class Record:
    state: str  # "making", "in-use" or "ready"
    fingerprint: str = ""
    data: str = ""  # a digest of the serialized contents, or "" if none
    flushed: bool = False

    def dumps(self) -> str:
        text = (
            f"{MAGIC} state={self.state} fp={self.fingerprint or '-'} "
            f"data={self.data or '-'} flushed={int(self.flushed)}"
        )
        assert _SAFE.match(text), text
        return text

    @classmethod
    def loads(cls, text: str | None) -> Record | None:
        if not text or not text.startswith(MAGIC + " "):
            return None
        fields = dict(part.split("=", 1) for part in text.split()[1:] if "=" in part)
        state = fields.get("state", "")
        if state not in ("making", "in-use", "ready"):
            return Record("in-use")  # ours, in a form we do not know: unusable
        return cls(
            state,
            "" if fields.get("fp") == "-" else fields.get("fp", ""),
            "" if fields.get("data") == "-" else fields.get("data", ""),
            fields.get("flushed") == "1",
        )

    def matches(self, fingerprint: str, data: str) -> bool:
        return (
            self.state == "ready"
            and self.fingerprint == fingerprint
            # Only where both runs serialized the contents (a run serializes
            # only what its tests need).
            and (not self.data or not data or self.data == data)
        )


def keeps_clones(connection: Any, rundir: str | Path) -> bool:
    """Whether clones of ``connection``'s test database can be kept."""
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "mysql":
        return bool(getattr(connection, "mysql_is_mariadb", False))
    if connection.vendor == "sqlite":
        name = str(connection.settings_dict.get("NAME") or "")
        if connection.creation.is_in_memory_db(name):
            return False
        # The file standing in for an in-memory database is the run's own.
        inside = os.path.join(str(rundir), "")
        return not os.path.abspath(name).startswith(inside)
    return False


# -- the test database's fingerprint ------------------------------------------


def fingerprint(connection: Any) -> str:
    """A digest of what a clone of this test database copies: its tables,
    their row counts and the applied migrations (django_migrations)."""
    digest = hashlib.sha256()
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        tables = sorted(connection.introspection.table_names(cursor))
        for table in tables:
            cursor.execute(f"SELECT COUNT(*) FROM {qn(table)}")
            digest.update(f"{table}:{cursor.fetchone()[0]}\n".encode())
        if "django_migrations" in tables:
            cursor.execute(
                f"SELECT {qn('app')}, {qn('name')} FROM {qn('django_migrations')}"
            )
            for app, name in sorted(cursor.fetchall()):
                digest.update(f"migration {app}.{name}\n".encode())
    return digest.hexdigest()[:32]


def data_digest(connection: Any) -> str:
    contents = getattr(connection, "_test_serialized_contents", None)
    if not contents:
        return ""
    return hashlib.sha256(contents.encode()).hexdigest()[:32]


# -- records -------------------------------------------------------------------


def clone_name(alias: str, slot: int) -> str:
    return connections[alias].creation.get_test_db_clone_settings(str(slot))["NAME"]


def read_records(alias: str, slots: list[int]) -> dict[int, Record | None]:
    """The records of ``alias``'s clones for ``slots``: None for a clone that
    does not exist or has no record of ours."""
    connection = connections[alias]
    names = {slot: clone_name(alias, slot) for slot in slots}
    if connection.vendor == "sqlite":
        return {slot: _read_sidecar(name) for slot, name in names.items()}
    queries = {
        "postgresql": (
            "SELECT datname, shobj_description(oid, 'pg_database') FROM "
            "pg_catalog.pg_database WHERE datname IN ({})"
        ),
        "mysql": (
            "SELECT schema_name, schema_comment FROM information_schema.schemata "
            "WHERE schema_name IN ({})"
        ),
    }
    if not names:
        return {}
    query = queries[connection.vendor].format(", ".join(["%s"] * len(names)))
    with connection._nodb_cursor() as cursor:
        cursor.execute(query, list(names.values()))
        found = dict(cursor.fetchall())
    return {
        slot: Record.loads(found[name]) if name in found else None
        for slot, name in names.items()
    }


def _read_sidecar(name: str) -> Record | None:
    if not os.path.exists(name):
        return None
    try:
        return Record.loads(Path(name + SIDECAR_SUFFIX).read_text())
    except OSError:
        return None


def write_records(alias: str, records: dict[int, Record]) -> None:
    """Set the records of existing clones; each write is atomic. Callable
    from a clone's thread (it uses a connection of its own)."""
    if not records:
        return
    connection = connections[alias].copy()
    try:
        if connection.vendor == "sqlite":
            for slot, record in records.items():
                path = Path(clone_name(alias, slot) + SIDECAR_SUFFIX)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                tmp.write_text(record.dumps())
                os.replace(tmp, path)
            return
        with connection._nodb_cursor() as cursor:
            for slot, record in records.items():
                quoted = connection.ops.quote_name(clone_name(alias, slot))
                text = record.dumps()  # checked: nothing to escape
                if connection.vendor == "postgresql":
                    cursor.execute(f"COMMENT ON DATABASE {quoted} IS '{text}'")
                else:
                    cursor.execute(f"ALTER DATABASE {quoted} COMMENT = '{text}'")
    finally:
        connection.close()


def forget_record(alias: str, slot: int) -> None:
    """Remove an SQLite clone's record file (a server's goes with the
    database)."""
    if connections[alias].vendor == "sqlite":
        with contextlib.suppress(OSError):
            os.remove(clone_name(alias, slot) + SIDECAR_SUFFIX)


# -- a run's decision ------------------------------------------------------------


@dataclass
class KeptClones:
    """Which slots' kept clones a run uses as they are (``reused``, with the
    aliases a TransactionTestCase left flushed) and which it makes again,
    and the clone names that are ours to drop without asking."""

    fingerprints: dict[str, tuple[str, str]]  # alias -> (fingerprint, data)
    reused: dict[int, list[str]]  # slot -> flushed aliases
    remade: dict[int, str]  # slot -> why (for -v 2)
    ours: set[str]  # clone names with a record of ours, to be made again


def ours_among(aliases: list[str], slots: list[int], rundir: str | Path) -> set[str]:
    """The names of the clones of ``slots`` that carry a record of ours (a
    run without ``--keepdb`` drops them without asking)."""
    names = set()
    for alias in aliases:
        if keeps_clones(connections[alias], rundir):
            for slot, record in read_records(alias, slots).items():
                if record is not None:
                    names.add(clone_name(alias, slot))
    return names


def decide(
    aliases: list[str],
    slots: list[int],
    rundir: str | Path,
    restorable: set[str],
) -> KeptClones:
    """Read the records of every clone of ``slots``; a slot is reused when
    each of its clones matches its test database, and one left flushed can
    be put back (``restorable``: serialized, or no ``TestCase`` needs it)."""
    if not aliases or not all(
        keeps_clones(connections[alias], rundir) for alias in aliases
    ):
        return KeptClones({}, {}, {}, set())
    prints = {
        alias: (fingerprint(connections[alias]), data_digest(connections[alias]))
        for alias in aliases
    }
    kept = KeptClones(prints, {}, {}, set())
    records = {alias: read_records(alias, slots) for alias in aliases}
    for slot in slots:
        why = ""
        flushed = []
        for alias in aliases:
            record = records[alias][slot]
            if record is not None:
                kept.ours.add(clone_name(alias, slot))
            if why:
                continue
            if record is None:
                why = "there is none"
            elif record.state == "making":
                why = "a run that was making it did not finish"
            elif record.state != "ready":
                why = "the run that used it last did not end normally"
            elif not record.matches(*prints[alias]):
                why = "the test database changed since it was made"
            elif record.flushed and alias not in restorable:
                why = "a TransactionTestCase flushed it"
            elif record.flushed:
                flushed.append(alias)
        if why:
            kept.remade[slot] = why
        else:
            kept.reused[slot] = flushed
    return kept
