"""Schema migrations: ordered SQL files, one transaction each, recorded in ``schema_migrations``.

Files live in ``store/migrations``: ``NNNN_name.sql`` is common to both database flavours;
``NNNN_name.timescaledb.sql`` and ``NNNN_name.postgres.sql`` hold what only one flavour runs. A
migration is the common file followed by its flavour file, applied in one transaction and recorded
with a checksum. The flavour is chosen once, on the first migration (TimescaleDB when the
extension is available, unless told otherwise) and recorded; later runs follow it.

Applying is idempotent: a second ``migrate`` finds nothing pending and changes nothing. An applied
migration whose file has since changed is reported, never silently re-run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

from store.config import Flavor
from store.errors import MigrationError

__all__ = [
    "AppliedMigration",
    "Migration",
    "MigrationStatus",
    "detect_flavor",
    "load_migrations",
    "migrate",
    "status",
]

ConcreteFlavor = Literal["postgres", "timescaledb"]
_FILE: Final = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<flavor>postgres|timescaledb))?\.sql")
# Serialises concurrent `vigil db migrate` runs (e.g. several services starting at once).
_LOCK_KEY: Final = 0x76_69_67_69_6C_6D_69  # "vigilmi"

_BOOKKEEPING: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    flavor      text NOT NULL CHECK (flavor IN ('postgres', 'timescaledb')),
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    common: str
    by_flavor: tuple[tuple[ConcreteFlavor, str], ...]

    def sql_for(self, flavor: ConcreteFlavor) -> str:
        parts = [self.common] + [text for f, text in self.by_flavor if f == flavor]
        return "\n".join(p for p in parts if p)

    def checksum(self, flavor: ConcreteFlavor) -> str:
        return hashlib.sha256(self.sql_for(flavor).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    flavor: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    flavor: ConcreteFlavor | None
    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    modified: tuple[int, ...]  # applied versions whose files changed since


def load_migrations() -> tuple[Migration, ...]:
    """All migrations shipped in ``store/migrations``, in order."""
    common: dict[int, tuple[str, str]] = {}
    flavored: dict[int, list[tuple[ConcreteFlavor, str]]] = {}
    names: dict[int, str] = {}
    for entry in resources.files("store.migrations").iterdir():
        m = _FILE.fullmatch(entry.name)
        if m is None:
            continue
        version, name = int(m["version"]), m["name"]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"migration {version:04d} has two names: {names[version]} and {name}")
        text = entry.read_text(encoding="utf-8")
        if m["flavor"] is None:
            common[version] = (name, text)
        else:
            flavor: ConcreteFlavor = "timescaledb" if m["flavor"] == "timescaledb" else "postgres"
            flavored.setdefault(version, []).append((flavor, text))
    return tuple(
        Migration(v, names[v], common.get(v, (names[v], ""))[1], tuple(sorted(flavored.get(v, []))))
        for v in sorted(names)
    )


def detect_flavor(conn: psycopg.Connection[Any]) -> ConcreteFlavor:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return "timescaledb" if row else "postgres"


def _recorded_flavor(conn: psycopg.Connection[Any]) -> ConcreteFlavor | None:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT flavor FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    if row is None:
        return None
    return "timescaledb" if row[0] == "timescaledb" else "postgres"


def _applied(conn: psycopg.Connection[Any]) -> tuple[AppliedMigration, ...]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return ()
    rows = conn.execute(
        "SELECT version, name, flavor, checksum, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return tuple(AppliedMigration(*row) for row in rows)


def status(conn: psycopg.Connection[Any], migrations: Sequence[Migration] | None = None) -> MigrationStatus:
    migrations = load_migrations() if migrations is None else tuple(migrations)
    applied = _applied(conn)
    flavor = _recorded_flavor(conn)
    done = {a.version: a for a in applied}
    pending = tuple(m for m in migrations if m.version not in done)
    by_version = {m.version: m for m in migrations}
    modified = tuple(
        a.version
        for a in applied
        if a.version in by_version and by_version[a.version].checksum(flavor or "postgres") != a.checksum
    )
    return MigrationStatus(flavor, applied, pending, modified)


def _resolve_flavor(conn: psycopg.Connection[Any], requested: Flavor) -> ConcreteFlavor:
    recorded = _recorded_flavor(conn)
    if recorded is not None:
        if requested not in ("auto", recorded):
            raise MigrationError(f"database was migrated as {recorded}; cannot switch to {requested}")
        return recorded
    if requested == "auto":
        return detect_flavor(conn)
    if requested == "timescaledb" and detect_flavor(conn) != "timescaledb":
        raise MigrationError("flavor timescaledb requested but the extension is not available")
    return requested


def migrate(conninfo: str, *, flavor: Flavor = "auto", target: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to ``target``); return the ones applied now."""
    migrations = load_migrations()
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_BOOKKEEPING)
            chosen = _resolve_flavor(conn, flavor)
            if chosen == "timescaledb":
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            st = status(conn, migrations)
            if st.modified:
                raise MigrationError(f"applied migrations changed on disk: {list(st.modified)}")
            for m in st.pending:
                if target is not None and m.version > target:
                    break
                _apply(conn, m, chosen)
                applied_now.append(m)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _apply(conn: psycopg.Connection[Any], m: Migration, flavor: ConcreteFlavor) -> None:
    text = m.sql_for(flavor)
    try:
        with conn.transaction():
            # Simple-protocol execution of the whole file: the files are trusted, versioned SQL.
            # The files are trusted, versioned SQL shipped with the package.
            conn.execute(sql.SQL(text))
            conn.execute(
                "INSERT INTO schema_migrations (version, name, flavor, checksum) VALUES (%s, %s, %s, %s)",
                (m.version, m.name, flavor, m.checksum(flavor)),
            )
    except psycopg.Error as exc:
        raise MigrationError(f"migration {m.version:04d}_{m.name} failed: {exc.sqlstate or ''} {exc}") from exc
