"""The PostgreSQL NOTIFY channels: their names, what is sent on them, and the API's listener.

* :data:`READINGS_CHANNEL` (``vigil_readings``): ingest NOTIFYs it after each commit
  (:func:`notify_watermark`, payload the ingest watermark of ``store.feed``); the alert engine
  LISTENs.
* :data:`ALERTS_CHANNEL` (``vigil_alerts``): migration 0023's trigger on ``alert_events`` NOTIFYs it
  when the event's transaction commits (payload an :class:`AlertNotice` as JSON); the API LISTENs.
* :data:`NOTIFICATIONS_CHANNEL` (``vigil_notify``): migration 0050's trigger NOTIFYs it when
  notifications are queued (empty payload); the notification delivery worker LISTENs.
* :data:`MESSAGES_CHANNEL` (``vigil_messages``): migration 0042's triggers NOTIFY it when a message
  version is written (``kind='m'``) or a participant is added or removed (``kind='p'``), ids only
  (a :class:`MessageNotice`); the API LISTENs (:func:`message_notices`) and its open pages fetch
  what changed through the audited routes.

A notification is only a wake-up hint: a reader that missed one (not listening yet, reconnecting)
catches up from the tables. LISTEN on a plain connection is ``store.connection.listen``. The API runs
one listener per process (:func:`alert_notices`, an async iterator over one connection) and fans the
notices out to its open streams; no client polls the alerts table. A lost connection ends the
iterator with :class:`~store.errors.DatabaseUnavailable`; the caller reconnects (with backoff) and
tells its clients to refetch, since notices sent meanwhile are gone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql

from store.connection import Connection, session_options
from store.errors import DatabaseUnavailable

__all__ = [
    "ALERTS_CHANNEL",
    "MESSAGES_CHANNEL",
    "NOTIFICATIONS_CHANNEL",
    "READINGS_CHANNEL",
    "AlertNotice",
    "MessageNotice",
    "alert_notices",
    "message_notices",
    "notify_watermark",
    "parse_message_notice",
    "parse_notice",
]

log = logging.getLogger(__name__)

# The channel ingest NOTIFYs after each commit (payload: the new ingest watermark).
READINGS_CHANNEL: Final = "vigil_readings"
# Channel of migration 0023's trigger on alert_events.
ALERTS_CHANNEL: Final = "vigil_alerts"
# The channel migration 0050's trigger NOTIFYs when notifications are queued.
NOTIFICATIONS_CHANNEL: Final = "vigil_notify"

MESSAGES_CHANNEL: Final = "vigil_messages"


def notify_watermark(conn: Connection, channel: str = READINGS_CHANNEL) -> int:
    """After a commit: NOTIFY ``channel`` with the current horizon (see ``store.feed``); return it.

    The payload is a wake-up hint; consumers recompute the watermark themselves.
    """
    row = conn.execute(
        sql.SQL("SELECT h, pg_notify({}, h::text) FROM (SELECT vigil_horizon()::text AS h) s").format(
            sql.Literal(channel)
        )
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class AlertNotice:
    alert_id: int
    org_id: str
    patient_id: str
    event: str
    severity: str
    state: str


def parse_notice(payload: str) -> AlertNotice | None:
    """The notice in a payload, or None for a payload that is not one (logged, skipped)."""
    try:
        doc = json.loads(payload)
        return AlertNotice(
            alert_id=int(doc["alert_id"]),
            org_id=str(doc["org_id"]),
            patient_id=str(doc["patient_id"]),
            event=str(doc["event"]),
            severity=str(doc["severity"]),
            state=str(doc["state"]),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("ignored a malformed notice on %s (%d bytes)", ALERTS_CHANNEL, len(payload))
        return None


async def alert_notices(
    url: str, *, channel: str = ALERTS_CHANNEL, ready: bool = True
) -> AsyncIterator[AlertNotice | None]:
    """Notices as they arrive. With ``ready``, first yields None once the LISTEN is in place (the
    moment from which no notice is missed)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, application_name="vigil-api-listen", options=session_options(url)
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    try:
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            if ready:
                yield None
            async for n in conn.notifies():
                notice = parse_notice(n.payload)
                if notice is not None:
                    yield notice
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc


@dataclass(frozen=True, slots=True)
class MessageNotice:
    kind: str  # 'm' (a message version) | 'p' (a participant change)
    org_id: str
    thread_id: str
    message_id: str | None = None
    seq: int | None = None
    version: int | None = None
    author_id: str | None = None
    deleted: bool = False
    user_id: str | None = None  # 'p': whose participation changed
    active: bool = True  # 'p': added (True) or removed (False)


def parse_message_notice(payload: str) -> MessageNotice | None:
    """The notice in a payload, or None for one that is not (logged by size, skipped)."""
    try:
        doc = json.loads(payload)
        kind = str(doc["k"])
        if kind == "m":
            return MessageNotice(
                "m",
                str(doc["org_id"]),
                str(doc["thread_id"]),
                message_id=str(doc["message_id"]),
                seq=int(doc["seq"]),
                version=int(doc["version"]),
                author_id=str(doc["author_id"]),
                deleted=bool(doc["deleted"]),
            )
        if kind == "p":
            return MessageNotice(
                "p", str(doc["org_id"]), str(doc["thread_id"]), user_id=str(doc["user_id"]), active=bool(doc["active"])
            )
        raise ValueError(kind)  # noqa: TRY301 - one path for every malformed payload
    except (ValueError, KeyError, TypeError):
        log.warning("ignored a malformed notice on %s (%d bytes)", MESSAGES_CHANNEL, len(payload))
        return None


async def message_notices(url: str) -> AsyncIterator[MessageNotice | None]:
    """Notices as they arrive; first None once the LISTEN is in place (nothing after it is missed)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, application_name="vigil-api-messages", options=session_options(url)
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    try:
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(MESSAGES_CHANNEL)))
            yield None
            async for n in conn.notifies():
                notice = parse_message_notice(n.payload)
                if notice is not None:
                    yield notice
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
