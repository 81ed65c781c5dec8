"""The notification outbox: notifications written in the transaction of the event that causes them.

This module enqueues and reads; the delivery worker's claims, attempts and recovery are in
:mod:`store.notification_delivery`. ``params`` must hold no PHI; ``secret_params`` (a one-time
link) is erased by the worker when the row leaves the pending states (a CHECK constraint holds it
to that). An ``idempotency_key`` makes enqueueing the same notification twice a no-op; the worker
also hands it to the provider (the email's Message-ID, the gateway's Idempotency-Key).

States (migration 0050): ``pending`` -> ``sending`` -> ``sent`` | ``delivered`` | ``failed`` |
``canceled``; a transient failure goes back to ``pending`` with a later ``next_attempt_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.connection import Connection

__all__ = [
    "STATES",
    "InboxRow",
    "NewNotification",
    "NotificationRow",
    "OutboxRow",
    "alert_notifications",
    "enqueue",
    "get_notification",
    "inbox",
    "list_notifications",
    "mark_read",
    "pending_for",
    "state_counts",
]

STATES: Final = ("pending", "sending", "sent", "delivered", "failed", "canceled")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewNotification:
    org_id: str
    channel: str  # 'email' | 'sms' | 'push' | 'in_app'
    recipient_user_id: str
    kind: str
    idempotency_key: str
    params: Mapping[str, Any]
    secret_params: Mapping[str, Any] | None = None
    not_after: datetime | None = None
    # What it is about (the alert's timeline shows its delivery), when it is about an alert.
    alert_id: int | None = None
    action_id: int | None = None
    urgent: bool = False  # a critical alert: quiet hours do not hold it back
    next_attempt_at: datetime | None = None  # first attempt (default: at once)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    outbox_id: int
    channel: str
    recipient_user_id: str
    kind: str
    params: dict[str, Any]
    secret_params: dict[str, Any] | None
    state: str
    not_after: datetime | None


_COLUMNS: Final = (
    "outbox_id, org_id, channel, recipient_user_id::text AS recipient_user_id, kind, template_version, params, "
    "idempotency_key, state, attempts, next_attempt_at, not_after, created_at, sent_at, delivered_at, failed_at, "
    "canceled_at, last_error, alert_id, action_id, urgent, deferred, provider_ref, read_at"
)


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """A notification as the timeline, the inbox and ``vigil notify`` see it (never its secrets)."""

    outbox_id: int
    org_id: str
    channel: str
    recipient_user_id: str
    kind: str
    template_version: int
    params: dict[str, Any]
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    not_after: datetime | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    canceled_at: datetime | None
    last_error: str | None
    alert_id: int | None
    action_id: int | None
    urgent: bool
    deferred: str | None
    provider_ref: str | None
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class InboxRow:
    outbox_id: int
    kind: str
    template_version: int
    params: dict[str, Any]
    alert_id: int | None
    urgent: bool
    created_at: datetime
    delivered_at: datetime
    read_at: datetime | None


def enqueue(conn: Connection, n: NewNotification, now: datetime) -> int | None:
    """Queue ``n``; returns its id, or None when its idempotency key is queued already."""
    row = conn.execute(
        "INSERT INTO notification_outbox (org_id, channel, recipient_user_id, kind, params, secret_params, "
        "idempotency_key, next_attempt_at, not_after, created_at, alert_id, action_id, urgent) "
        "VALUES (%s, %s, %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING outbox_id",
        (
            n.org_id,
            n.channel,
            n.recipient_user_id,
            n.kind,
            Jsonb(dict(n.params)),
            None if n.secret_params is None else Jsonb(dict(n.secret_params)),
            n.idempotency_key,
            n.next_attempt_at or now,
            n.not_after,
            now,
            n.alert_id,
            n.action_id,
            n.urgent,
        ),
    ).fetchone()
    return None if row is None else int(row[0])


def pending_for(conn: Connection, recipient_user_id: str, *, kind: str | None = None) -> list[OutboxRow]:
    """Pending notifications of one recipient (oldest first)."""
    rows = conn.execute(
        "SELECT outbox_id, channel, recipient_user_id::text, kind, params, secret_params, state, not_after "
        "FROM notification_outbox WHERE recipient_user_id = %s::uuid AND state = 'pending' "
        "AND (%s::text IS NULL OR kind = %s) ORDER BY outbox_id",
        (recipient_user_id, kind, kind),
    ).fetchall()
    return [OutboxRow(*r) for r in rows]


def get_notification(conn: Connection, outbox_id: int) -> NotificationRow | None:
    with conn.cursor(row_factory=class_row(NotificationRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM notification_outbox WHERE outbox_id = %s",  # noqa: S608 - constant columns
            (outbox_id,),
        ).fetchone()


def alert_notifications(conn: Connection, alert_id: int) -> list[NotificationRow]:
    """Every notification about one alert, in the order they were queued (the alert's timeline)."""
    with conn.cursor(row_factory=class_row(NotificationRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM notification_outbox WHERE alert_id = %s ORDER BY outbox_id",  # noqa: S608
            (alert_id,),
        ).fetchall()


def list_notifications(
    conn: Connection, *, state: str | None = None, org_id: str | None = None, limit: int = 100
) -> list[NotificationRow]:
    """The newest notifications, optionally of one state and organisation (``vigil notify list``)."""
    with conn.cursor(row_factory=class_row(NotificationRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM notification_outbox "  # noqa: S608 - constant columns
            "WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(org)s::text IS NULL OR org_id = %(org)s) "
            "ORDER BY outbox_id DESC LIMIT %(limit)s",
            {"state": state, "org": org_id, "limit": limit},
        ).fetchall()


def state_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(channel, state) -> how many notifications."""
    rows = conn.execute("SELECT channel, state, count(*) FROM notification_outbox GROUP BY channel, state").fetchall()
    return {(str(c), str(s)): int(n) for c, s, n in rows}


def inbox(conn: Connection, user_id: str, *, before: int | None = None, limit: int = 50) -> list[InboxRow]:
    """A user's in-app notifications, newest first (keyset: ``before`` an outbox id)."""
    with conn.cursor(row_factory=class_row(InboxRow)) as cur:
        return cur.execute(
            "SELECT outbox_id, kind, template_version, params, alert_id, urgent, created_at, delivered_at, read_at "
            "FROM notification_outbox WHERE recipient_user_id = %s::uuid AND channel = 'in_app' "
            "AND state = 'delivered' AND (%s::bigint IS NULL OR outbox_id < %s) ORDER BY outbox_id DESC LIMIT %s",
            (user_id, before, before, limit),
        ).fetchall()


def mark_read(conn: Connection, user_id: str, outbox_id: int, at: datetime) -> bool:
    """Mark one of the user's in-app notifications read; False when it is not theirs or not delivered."""
    cur = conn.execute(
        "UPDATE notification_outbox SET read_at = coalesce(read_at, %s) WHERE outbox_id = %s "
        "AND recipient_user_id = %s::uuid AND channel = 'in_app' AND state = 'delivered'",
        (at, outbox_id, user_id),
    )
    return cur.rowcount == 1
