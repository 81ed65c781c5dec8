"""The notification outbox: notifications written in the transaction of the event that causes them.

This module only enqueues; the delivery worker (care-team communication work) claims, sends,
retries and marks them. ``params`` must hold no PHI; ``secret_params`` (a one-time link) is erased
by the worker when the row leaves the pending states (a CHECK constraint holds it to that). An
``idempotency_key`` makes enqueueing the same notification twice a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from store.connection import Connection

__all__ = ["NewNotification", "OutboxRow", "enqueue", "pending_for"]


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


def enqueue(conn: Connection, n: NewNotification, now: datetime) -> int | None:
    """Queue ``n``; returns its id, or None when its idempotency key is queued already."""
    row = conn.execute(
        "INSERT INTO notification_outbox (org_id, channel, recipient_user_id, kind, params, secret_params, "
        "idempotency_key, next_attempt_at, not_after, created_at) "
        "VALUES (%s, %s, %s::uuid, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING outbox_id",
        (
            n.org_id,
            n.channel,
            n.recipient_user_id,
            n.kind,
            Jsonb(dict(n.params)),
            None if n.secret_params is None else Jsonb(dict(n.secret_params)),
            n.idempotency_key,
            now,
            n.not_after,
            now,
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
