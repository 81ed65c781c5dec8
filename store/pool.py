"""Connection pools. Nothing here runs at import time: callers pass settings to :func:`open_pool`."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from store.config import DatabaseSettings

__all__ = ["connect_kwargs", "open_async_pool", "open_pool"]


def connect_kwargs(settings: DatabaseSettings) -> dict[str, object]:
    return {
        "application_name": settings.application_name,
        "connect_timeout": max(1, int(settings.connect_timeout_s)),
    }


def open_pool(settings: DatabaseSettings, *, name: str = "vigil") -> ConnectionPool:
    """Open a pool and wait until its minimum connections exist (fails fast on a bad URL)."""
    pool = ConnectionPool(
        settings.url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        kwargs=connect_kwargs(settings),
        name=name,
        open=False,
    )
    pool.open(wait=settings.pool_min > 0, timeout=settings.connect_timeout_s)
    return pool


async def open_async_pool(settings: DatabaseSettings, *, name: str = "vigil") -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        settings.url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        kwargs=connect_kwargs(settings),
        name=name,
        open=False,
    )
    await pool.open(wait=settings.pool_min > 0, timeout=settings.connect_timeout_s)
    return pool
