"""Plain connections for long-running consumers (the alert engine), LISTEN/NOTIFY and error translation.

Packages above ``store`` never import psycopg: they hold a :data:`Connection` they got from here and
pass it back into ``store`` functions. Errors are translated at this boundary by SQLSTATE class
(:func:`translate_error`, a pure function of the error), so that a failure of the *database* is
never mistaken for a failure of the data being written:

======================================  ==========================  ========================================
SQLSTATE                                what it means               translated to
======================================  ==========================  ========================================
none (no server answer), class 08       connection refused or lost  ``DatabaseUnavailable``
class 25 (25006 read-only transaction)  a standby, a read-only      ``DatabaseUnavailable``
                                        database, a failed session
class 28, 3D000, 42501                  credentials, database or    ``DatabaseUnavailable``
                                        privileges taken away
class 53 (53100 disk full, 53200 out    the server's resources      ``DatabaseUnavailable``
of memory, 53300 too many connections,
53400 configuration limit)
class 57 (57014 cancelled, 57P01 admin  an operator or the server   ``DatabaseUnavailable``
shutdown, 57P03 cannot connect now)     stopped us
class 58 (58030 I/O error), class XX    the server itself failed    ``DatabaseUnavailable``
40001, 40P01, 55P03                     serialization failure,      ``TransientConflict`` (retry at once)
                                        deadlock, lock timeout
42P01                                   a table is missing          ``MigrationError``
other operational errors (55006 ...)    the server's state          ``DatabaseUnavailable``
anything else (22 data, 23 integrity,   possibly the data written   None: unchanged (psycopg's; ingest
54 program limit, ...)                                              splits its batch to find the message)
======================================  ==========================  ========================================

``DatabaseUnavailable`` means: retry the same work after a pause (``rpm_core.backoff``), on a new
connection; nothing about the data is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeAlias

import psycopg
from psycopg import conninfo, sql

from store.errors import DatabaseUnavailable, MigrationError, StoreError, TransientConflict

__all__ = [
    "TRANSIENT_SQLSTATES",
    "Connection",
    "as_store_errors",
    "connect",
    "listen",
    "synchronous_commit",
    "translate_error",
    "translate_errors",
    "wait_for_notification",
]

Connection: TypeAlias = psycopg.Connection[Any]

_UNAVAILABLE_CLASSES: Final = frozenset({"08", "25", "28", "53", "57", "58", "XX"})
_UNAVAILABLE_STATES: Final = frozenset({"3D000", "42501"})
TRANSIENT_SQLSTATES: Final = frozenset({"40001", "40P01", "55P03"})
_DATA_CLASSES: Final = frozenset({"54"})  # program limits: the data written may be what exceeds them
_MISSING_TABLE: Final = "42P01"


def translate_error(exc: psycopg.Error) -> StoreError | None:
    """The store error a psycopg error stands for (the table above), or None when the data written
    may be at fault (the caller decides; ingest splits the batch to find the message)."""
    state = exc.sqlstate
    if state == _MISSING_TABLE:
        return MigrationError("the database schema is not migrated: run `vigil db migrate`")
    if state in TRANSIENT_SQLSTATES:
        return TransientConflict(state)
    if state is not None and (state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES):
        return DatabaseUnavailable(f"database unavailable ({state})", sqlstate=state)
    operational = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    if operational and (state is None or state[:2] not in _DATA_CLASSES):
        # No server answer (refused, lost, protocol trouble) or another operational condition.
        return DatabaseUnavailable(f"database unavailable ({state or type(exc).__name__})", sqlstate=state)
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Translate psycopg errors as :func:`translate_error` says; the rest stay psycopg's (bugs,
    constraint violations: not retried).

    For consumers that retry by reconnecting after a pause (the alert engine), a transient conflict
    is raised as :class:`DatabaseUnavailable` too: that is the right retry for them.
    """
    try:
        yield
    except psycopg.Error as exc:
        translated = translate_error(exc)
        if translated is None:
            raise
        if isinstance(translated, TransientConflict):
            raise DatabaseUnavailable(f"database unavailable ({exc.sqlstate})", sqlstate=exc.sqlstate) from exc
        raise translated from exc


@contextmanager
def as_store_errors() -> Iterator[None]:
    """Every psycopg error leaves as a :class:`StoreError`: :func:`translate_error`'s, else a plain
    ``StoreError`` naming the SQLSTATE (the data written may be at fault: ingest splits its batch)."""
    try:
        yield
    except psycopg.Error as exc:
        raise (translate_error(exc) or StoreError(f"database error {exc.sqlstate or type(exc).__name__}")) from exc


UTC_SESSION: Final = "-c TimeZone=UTC"


def session_options(url: str) -> str:
    """The ``options`` every Vigil session connects with: the URL's own, then ``TimeZone=UTC``.

    Vigil stores and reasons in UTC: hourly and daily buckets (``date_trunc`` on ``timestamptz``
    follows the session's time zone) must not move with the server's ``timezone`` setting. And with
    the session in UTC, psycopg returns ``timestamptz`` values with ``datetime.timezone.utc`` instead of a
    ``zoneinfo`` zone: same instants, but loading a timestamp then costs about a quarter less (the
    panel's 1,400 latest values), and every later ``utcoffset()`` is a C call."""
    own = conninfo.conninfo_to_dict(url).get("options")
    return f"{own} {UTC_SESSION}" if own else UTC_SESSION


def connect(url: str, *, application_name: str = "vigil", connect_timeout_s: float = 10.0) -> Connection:
    """An autocommit connection: callers open explicit transactions with ``conn.transaction()``."""
    with translate_errors():
        return psycopg.connect(
            url,
            autocommit=True,
            application_name=application_name,
            connect_timeout=max(1, int(connect_timeout_s)),
            options=session_options(url),
        )


def listen(conn: Connection, channel: str) -> None:
    with translate_errors():
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


def wait_for_notification(conn: Connection, timeout_s: float) -> bool:
    """Block until a notification arrives on a channel this connection listens to, or the timeout."""
    with translate_errors():
        return any(True for _ in conn.notifies(timeout=max(timeout_s, 0.0), stop_after=1))


def synchronous_commit(conn: Connection) -> str:
    """The server's ``synchronous_commit`` for this session (ingest acks only after a durable COMMIT)."""
    row = conn.execute("SHOW synchronous_commit").fetchone()
    return str(row[0]) if row else ""
