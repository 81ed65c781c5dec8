"""Server-level administration: databases themselves, not the rows in them.

``vigil demo`` creates its database in the embedded server; the benchmarks create and drop a
scratch database per run. Each function opens its own autocommit connection to ``admin_url`` (a
database on the same server, usually ``postgres``): ``CREATE DATABASE`` cannot run in a
transaction. Database names are quoted as identifiers, never pasted into the statement.
"""

from __future__ import annotations

from psycopg import conninfo, sql

from store.connection import connect, translate_errors

__all__ = ["create_database", "database_url", "drop_database", "server_version"]


def database_url(url: str, dbname: str) -> str:
    """``url`` (a URL or a key=value connection string) pointing at database ``dbname`` instead."""
    return conninfo.make_conninfo(url, dbname=dbname)


def server_version(url: str) -> str:
    """The server's version string (``SHOW server_version``)."""
    with connect(url, application_name="vigil-admin") as conn, translate_errors():
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def create_database(admin_url: str, dbname: str, *, exist_ok: bool = False) -> bool:
    """Create database ``dbname``; with ``exist_ok`` an existing one is kept. True when it was created."""
    with connect(admin_url, application_name="vigil-admin") as conn, translate_errors():
        if exist_ok and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return True


def drop_database(admin_url: str, dbname: str) -> None:
    """Drop database ``dbname`` if it exists, disconnecting its sessions (``WITH (FORCE)``)."""
    with connect(admin_url, application_name="vigil-admin") as conn, translate_errors():
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
