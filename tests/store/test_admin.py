"""store.admin: creating and dropping whole databases (the demo's and the benchmarks' scratch ones),
with names quoted as identifiers, never pasted into the statement."""

from __future__ import annotations

import secrets

import psycopg

from store.admin import create_database, database_url, drop_database, server_version
from tests.support import pg


def _exists(name: str) -> bool:
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_create_keep_and_drop() -> None:
    name = f"vigil_test_admin_{secrets.token_hex(4)}"
    try:
        assert create_database(pg.admin_url(), name) is True
        assert create_database(pg.admin_url(), name, exist_ok=True) is False  # kept, as the demo's
        with psycopg.connect(database_url(pg.admin_url(), name)) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        drop_database(pg.admin_url(), name)
    assert not _exists(name)
    drop_database(pg.admin_url(), name)  # dropping what is gone is no error


def test_a_hostile_name_is_one_identifier() -> None:
    """A name that would end the statement and start another is created as that literal name."""
    victim = f"vigil_test_victim_{secrets.token_hex(4)}"
    hostile = f'{victim}"; DROP DATABASE "{victim}'
    create_database(pg.admin_url(), victim)
    try:
        create_database(pg.admin_url(), hostile)
        assert _exists(hostile)
        assert _exists(victim)
    finally:
        drop_database(pg.admin_url(), hostile)
        drop_database(pg.admin_url(), victim)
    assert not _exists(hostile)


def test_server_version() -> None:
    with psycopg.connect(pg.admin_url()) as conn:
        expected = conn.execute("SHOW server_version").fetchone()
    assert expected is not None
    assert server_version(pg.admin_url()) == expected[0]
