"""Plain connections for long-running consumers (the alert engine), LISTEN/NOTIFY and error translation.

Packages above ``store`` never import psycopg: they hold a :data:`Connection` they got from here and
pass it back into ``store`` functions. A lost server surfaces as
:class:`~store.errors.DatabaseUnavailable` (retry after a pause), an unmigrated database as
:class:`~store.errors.MigrationError`; other database errors stay psycopg's (bugs, constraint
violations) and are not retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg import sql

from store.errors import DatabaseUnavailable, MigrationError

__all__ = ["Connection", "connect", "listen", "translate_errors", "wait_for_notification"]

Connection: TypeAlias = psycopg.Connection[Any]


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn a lost connection or an unreachable server into :class:`DatabaseUnavailable`, and a
    missing table into :class:`MigrationError` (the database was not migrated)."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise MigrationError("the database schema is not migrated: run `vigil db migrate`") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc


def connect(url: str, *, application_name: str = "vigil", connect_timeout_s: float = 10.0) -> Connection:
    """An autocommit connection: callers open explicit transactions with ``conn.transaction()``."""
    with translate_errors():
        return psycopg.connect(
            url, autocommit=True, application_name=application_name, connect_timeout=max(1, int(connect_timeout_s))
        )


def listen(conn: Connection, channel: str) -> None:
    with translate_errors():
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


def wait_for_notification(conn: Connection, timeout_s: float) -> bool:
    """Block until a notification arrives on a channel this connection listens to, or the timeout."""
    with translate_errors():
        return any(True for _ in conn.notifies(timeout=max(timeout_s, 0.0), stop_after=1))
