"""PostgreSQL for tests: one migrated database per test run, emptied before each test.

The server is the one named by ``VIGIL_TEST_DATABASE_URL`` (default: the local server over its
Unix socket) as a superuser. Each run creates ``vigil_test_<random>``, migrates it once with the real migration
runner, and drops it at the end. Tests get isolation by TRUNCATE of every table except the
migration bookkeeping (about 10 ms), which also works for tests whose code under test runs in
other processes and commits for real.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_ADMIN_URL: Final = "postgresql:///postgres?host=/var/run/postgresql"


def admin_url() -> str:
    return os.environ.get("VIGIL_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


def url_for(dbname: str, base: str | None = None) -> str:
    params = conninfo_to_dict(base or admin_url())
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


def create_database(prefix: str = "vigil_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def temporary_database(prefix: str = "vigil_test") -> Iterator[str]:
    """A new empty database for the duration of the block; yields its URL."""
    name = create_database(prefix)
    try:
        yield url_for(name)
    finally:
        drop_database(name)


def truncate_all(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ]
        if tables:
            # The audit log refuses TRUNCATE for everyone (a trigger); a superuser's session in
            # replica mode fires no ordinary triggers, which is how a test database is emptied.
            conn.execute("SET session_replication_role = replica")
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(map(sql.SQL, tables)))
            )
