"""The clinician API's connection pool: autocommit connections running as the application role.

Every pooled connection runs ``SET ROLE`` to ``role`` (default ``vigil_app``, created by migration
0020) when the pool opens it, so whatever login the URL names, the API holds no UPDATE, DELETE or
TRUNCATE on the audit log. Connections are autocommit: callers open explicit transactions with
``conn.transaction()``. Nothing runs at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from store.connection import Connection, session_options, translate_errors
from store.errors import DatabaseUnavailable

__all__ = ["AppPool", "PoolOptions", "open_app_pool"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolOptions:
    url: str
    min_size: int = 2
    max_size: int = 16
    role: str | None = "vigil_app"
    application_name: str = "vigil-api"
    connect_timeout_s: float = 10.0
    # How long a request waits for a free connection before DatabaseUnavailable.
    acquire_timeout_s: float = 10.0


class AppPool:
    """A psycopg pool whose connections come out as :data:`store.connection.Connection`."""

    def __init__(self, pool: ConnectionPool[Any], acquire_timeout_s: float) -> None:
        self._pool = pool
        self._timeout = acquire_timeout_s

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            with translate_errors(), self._pool.connection(timeout=self._timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable("no database connection free in time") from exc

    def close(self) -> None:
        self._pool.close()

    def stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())


def open_app_pool(options: PoolOptions) -> AppPool:
    """Open the pool and wait for its first connections (fails fast on a bad URL or role)."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        if options.role:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(options.role)))

    pool: ConnectionPool[Any] = ConnectionPool(
        options.url,
        min_size=options.min_size,
        max_size=max(options.max_size, options.min_size),
        kwargs={
            "autocommit": True,
            "application_name": options.application_name,
            "connect_timeout": max(1, int(options.connect_timeout_s)),
            "options": session_options(options.url),
        },
        configure=configure,
        name="vigil-api",
        open=False,
    )
    try:
        with translate_errors():
            pool.open(wait=options.min_size > 0, timeout=options.connect_timeout_s)
    except PoolTimeout as exc:
        pool.close()
        raise DatabaseUnavailable("the API's database pool could not open its connections") from exc
    return AppPool(pool, options.acquire_timeout_s)
