"""The delivery worker's side of the notification outbox: claims, attempts, outcomes, recovery.

A worker registers by holding the session advisory lock ``(NOTIFY_LOCK_CLASS, worker_key)``; the
lock dies with its connection, so a killed worker is seen gone at once. It then repeats:

1. :func:`due` locks due ``pending`` rows with ``FOR UPDATE SKIP LOCKED`` (several workers never
   take the same row) together with what deciding needs (recipient, alert state, preferences);
2. for each, in the same transaction, :func:`begin_attempt` (state ``sending``, phase
   ``prepared``, a new attempt id and row in ``notification_attempts``), :func:`defer` (quiet
   hours) or :func:`cancel`; COMMIT;
3. just before the irrevocable part of a send, :func:`mark_committing` (phase ``committing``);
4. :func:`finish` records the outcome. Every write after the claim is fenced by the attempt id:
   a worker whose row was recovered by another cannot overwrite the other's outcome.

:func:`orphaned` finds ``sending`` rows whose worker no longer holds its lock (or whose lease ran
out) and :func:`recover` requeues or fails them.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Final, Literal

from psycopg.rows import class_row

from store.connection import Connection

__all__ = [
    "NOTIFY_LOCK_CLASS",
    "AttemptRow",
    "Candidate",
    "Orphan",
    "Outcome",
    "attempts_of",
    "begin_attempt",
    "cancel",
    "defer",
    "due",
    "finish",
    "mark_committing",
    "next_due",
    "orphaned",
    "recover",
    "register_worker",
]

# First key of the workers' two-key advisory locks ("ntfy"); the second is the worker's key.
NOTIFY_LOCK_CLASS: Final = 0x6E746679 & 0x7FFFFFFF

Outcome = Literal["sent", "delivered", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due notification, locked, with what the worker decides on."""

    outbox_id: int
    org_id: str
    channel: str
    recipient_user_id: str
    kind: str
    template_version: int
    params: dict[str, Any]
    secret_params: dict[str, Any] | None
    idempotency_key: str
    attempts: int
    urgent: bool
    alert_id: int | None
    not_after: datetime | None
    created_at: datetime
    recipient_status: str
    recipient_email: str
    alert_state: str | None  # None when it is not about an alert (or the alert is gone)
    sms_number: str | None
    push_token: str | None
    time_zone: str
    quiet_start: time | None
    quiet_end: time | None


@dataclass(frozen=True, slots=True)
class Orphan:
    outbox_id: int
    attempt_id: str
    channel: str
    send_phase: str
    attempts: int


@dataclass(frozen=True, slots=True)
class AttemptRow:
    attempt_id: str
    outbox_id: int
    attempt_no: int
    worker_key: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: str | None
    next_attempt_at: datetime | None


def register_worker(conn: Connection) -> int:
    """Take a fresh worker key (held until this connection closes) and return it."""
    while True:
        key = secrets.randbelow(0x7FFFFFFF - 1) + 1
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (NOTIFY_LOCK_CLASS, key)).fetchone()
        if row and row[0]:
            return key


def due(conn: Connection, now: datetime, *, channels: Sequence[str], limit: int) -> list[Candidate]:
    """Lock up to ``limit`` due pending notifications of ``channels`` (call inside a transaction)."""
    with conn.cursor(row_factory=class_row(Candidate)) as cur:
        return cur.execute(
            "SELECT o.outbox_id, o.org_id, o.channel, o.recipient_user_id::text AS recipient_user_id, o.kind, "
            "o.template_version, o.params, o.secret_params, o.idempotency_key, o.attempts, o.urgent, o.alert_id, "
            "o.not_after, o.created_at, u.status AS recipient_status, u.email AS recipient_email, "
            "a.state AS alert_state, p.sms_number, p.push_token, coalesce(p.time_zone, 'UTC') AS time_zone, "
            "p.quiet_start, p.quiet_end "
            "FROM notification_outbox o JOIN users u ON u.user_id = o.recipient_user_id "
            "LEFT JOIN alerts a ON a.alert_id = o.alert_id "
            "LEFT JOIN notification_preferences p ON p.user_id = o.recipient_user_id "
            "WHERE o.state = 'pending' AND o.next_attempt_at <= %s AND o.channel = ANY(%s) "
            "ORDER BY o.next_attempt_at, o.outbox_id LIMIT %s FOR UPDATE OF o SKIP LOCKED",
            (now, list(channels), limit),
        ).fetchall()


def next_due(conn: Connection, *, channels: Sequence[str]) -> datetime | None:
    """When the earliest pending notification of ``channels`` is due (None: nothing pending)."""
    row = conn.execute(
        "SELECT min(next_attempt_at) FROM notification_outbox WHERE state = 'pending' AND channel = ANY(%s)",
        (list(channels),),
    ).fetchone()
    return None if row is None else row[0]


def begin_attempt(
    conn: Connection, c: Candidate, *, worker_key: int, now: datetime, lease_until: datetime
) -> tuple[str, int]:
    """Mark ``c`` sending under a new attempt; returns (attempt id, attempt number)."""
    attempt_id = str(uuid.uuid4())
    number = c.attempts + 1
    conn.execute(
        "UPDATE notification_outbox SET state = 'sending', attempt_id = %s, worker_key = %s, lease_until = %s, "
        "send_phase = 'prepared', attempts = %s, deferred = NULL WHERE outbox_id = %s",
        (attempt_id, worker_key, lease_until, number, c.outbox_id),
    )
    conn.execute(
        "INSERT INTO notification_attempts (attempt_id, outbox_id, attempt_no, worker_key, started_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        (attempt_id, c.outbox_id, number, worker_key, now),
    )
    return attempt_id, number


def defer(conn: Connection, outbox_id: int, until: datetime, *, reason: str) -> None:
    """Hold a pending notification back until ``until`` without an attempt (quiet hours)."""
    conn.execute(
        "UPDATE notification_outbox SET next_attempt_at = %s, deferred = %s WHERE outbox_id = %s AND state = 'pending'",
        (until, reason, outbox_id),
    )


def cancel(conn: Connection, outbox_id: int, now: datetime, *, reason: str) -> None:
    """A pending notification that has become pointless (its alert acknowledged, its link expired)."""
    conn.execute(
        "UPDATE notification_outbox SET state = 'canceled', canceled_at = %s, last_error = %s, secret_params = NULL "
        "WHERE outbox_id = %s AND state = 'pending'",
        (now, reason[:200], outbox_id),
    )


def mark_committing(conn: Connection, outbox_id: int, attempt_id: str, *, lease_until: datetime) -> bool:
    """The attempt is about to do what cannot be taken back; False when it no longer owns the row."""
    cur = conn.execute(
        "UPDATE notification_outbox SET send_phase = 'committing', lease_until = %s "
        "WHERE outbox_id = %s AND attempt_id = %s AND state = 'sending'",
        (lease_until, outbox_id, attempt_id),
    )
    return cur.rowcount == 1


def finish(
    conn: Connection,
    outbox_id: int,
    attempt_id: str,
    now: datetime,
    outcome: Outcome,
    *,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
    provider_ref: str | None = None,
) -> bool:
    """Record how an attempt ended; False when the attempt no longer owns the row (it was recovered)."""
    if outcome == "retry" and next_attempt_at is None:
        raise ValueError("a retry needs next_attempt_at")
    state = {"sent": "sent", "delivered": "delivered", "retry": "pending", "failed": "failed"}[outcome]
    cur = conn.execute(
        "UPDATE notification_outbox SET state = %(state)s, attempt_id = NULL, worker_key = NULL, lease_until = NULL, "
        "send_phase = NULL, last_error = %(error)s, "
        "next_attempt_at = coalesce(%(next)s, next_attempt_at), "
        "provider_ref = coalesce(%(ref)s, provider_ref), "
        "sent_at = CASE WHEN %(state)s IN ('sent', 'delivered') THEN %(now)s END, "
        "delivered_at = CASE WHEN %(state)s = 'delivered' THEN %(now)s END, "
        "failed_at = CASE WHEN %(state)s = 'failed' THEN %(now)s END, "
        "secret_params = CASE WHEN %(state)s = 'pending' THEN secret_params END "
        "WHERE outbox_id = %(id)s AND attempt_id = %(attempt)s AND state = 'sending'",
        {
            "state": state,
            "error": None if error is None else error[:200],
            "next": next_attempt_at,
            "ref": provider_ref,
            "now": now,
            "id": outbox_id,
            "attempt": attempt_id,
        },
    )
    if cur.rowcount != 1:
        return False
    _close_attempt(conn, attempt_id, now, outcome, error, next_attempt_at)
    return True


def _close_attempt(
    conn: Connection, attempt_id: str, now: datetime, outcome: str, error: str | None, next_at: datetime | None
) -> None:
    conn.execute(
        "UPDATE notification_attempts SET finished_at = %s, outcome = %s, error = %s, next_attempt_at = %s "
        "WHERE attempt_id = %s AND finished_at IS NULL",
        (now, outcome, None if error is None else error[:200], next_at, attempt_id),
    )


def orphaned(conn: Connection, now: datetime, *, limit: int = 100) -> list[Orphan]:
    """Lock ``sending`` rows whose worker is gone (its lock is free) or whose lease ran out."""
    with conn.cursor(row_factory=class_row(Orphan)) as cur:
        return cur.execute(
            "SELECT o.outbox_id, o.attempt_id::text AS attempt_id, o.channel, o.send_phase, o.attempts "
            "FROM notification_outbox o WHERE o.state = 'sending' AND (o.lease_until < %s OR NOT EXISTS ("
            "SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
            "AND l.classid = %s::bigint::oid AND l.objid = o.worker_key::bigint::oid "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))) "
            "ORDER BY o.outbox_id LIMIT %s FOR UPDATE OF o SKIP LOCKED",
            (now, NOTIFY_LOCK_CLASS, limit),
        ).fetchall()


def recover(
    conn: Connection,
    o: Orphan,
    now: datetime,
    *,
    outcome: Literal["interrupted", "unknown"],
    requeue: bool,
    error: str,
) -> None:
    """Close a dead worker's attempt as ``outcome``; requeue the row at once, or fail it with ``error``."""
    conn.execute(
        "UPDATE notification_outbox SET state = %(state)s, attempt_id = NULL, worker_key = NULL, lease_until = NULL, "
        "send_phase = NULL, last_error = %(error)s, next_attempt_at = %(now)s, "
        "failed_at = CASE WHEN %(state)s = 'failed' THEN %(now)s END, "
        "secret_params = CASE WHEN %(state)s = 'pending' THEN secret_params END "
        "WHERE outbox_id = %(id)s AND attempt_id = %(attempt)s",
        {
            "state": "pending" if requeue else "failed",
            "error": error[:200],
            "now": now,
            "id": o.outbox_id,
            "attempt": o.attempt_id,
        },
    )
    _close_attempt(conn, o.attempt_id, now, outcome, error, now if requeue else None)


def attempts_of(conn: Connection, outbox_id: int) -> list[AttemptRow]:
    with conn.cursor(row_factory=class_row(AttemptRow)) as cur:
        return cur.execute(
            "SELECT attempt_id::text AS attempt_id, outbox_id, attempt_no, worker_key, started_at, finished_at, "
            "outcome, error, next_attempt_at FROM notification_attempts WHERE outbox_id = %s ORDER BY attempt_no",
            (outbox_id,),
        ).fetchall()
