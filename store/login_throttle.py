"""Sign-in failure counters with time-bounded lockouts, shared by every API process.

A key (``account:<user>``, ``address:<ip>``, ``account_address:<user>|<ip>``) counts failures in a
window that starts with its first failure; reaching ``max_failures`` locks the key until
``now + lockout``. A window that has ended (or a lockout that has run out) starts afresh at the
next failure, so no lockout lasts longer than ``lockout``. The upsert is one statement: concurrent
failures of one key all count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from store.connection import Connection

__all__ = ["clear", "locked_until", "record_failure"]


def locked_until(conn: Connection, keys: Sequence[str], now: datetime) -> datetime | None:
    """The latest lockout among ``keys`` still running at ``now``, or None."""
    row = conn.execute(
        "SELECT max(locked_until) FROM login_throttle WHERE key = ANY(%s) AND locked_until > %s", (list(keys), now)
    ).fetchone()
    return None if row is None else row[0]


def record_failure(
    conn: Connection, key: str, now: datetime, *, window: timedelta, max_failures: int, lockout: timedelta
) -> datetime | None:
    """Count one failure of ``key``; returns the lockout end when this failure locked it."""
    row = conn.execute(
        "WITH prev AS (SELECT window_start, failures, locked_until FROM login_throttle WHERE key = %(key)s) "
        "INSERT INTO login_throttle AS t (key, window_start, failures, locked_until) "
        "VALUES (%(key)s, %(now)s, 1, CASE WHEN %(max)s <= 1 THEN %(now)s + %(lock)s END) "
        "ON CONFLICT (key) DO UPDATE SET "
        "  window_start = CASE WHEN t.window_start <= %(now)s - %(window)s OR t.locked_until <= %(now)s "
        "                 THEN %(now)s ELSE t.window_start END, "
        "  failures = CASE WHEN t.window_start <= %(now)s - %(window)s OR t.locked_until <= %(now)s "
        "             THEN 1 ELSE t.failures + 1 END, "
        "  locked_until = CASE "
        "    WHEN t.locked_until > %(now)s THEN t.locked_until "
        "    WHEN (CASE WHEN t.window_start <= %(now)s - %(window)s OR t.locked_until <= %(now)s "
        "          THEN 1 ELSE t.failures + 1 END) >= %(max)s THEN %(now)s + %(lock)s "
        "    ELSE NULL END "
        "RETURNING locked_until",
        {"key": key, "now": now, "window": window, "max": max_failures, "lock": lockout},
    ).fetchone()
    return None if row is None else row[0]


def clear(conn: Connection, key: str) -> None:
    conn.execute("DELETE FROM login_throttle WHERE key = %s", (key,))
