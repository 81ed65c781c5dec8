"""Acknowledgement links: the single-use record behind a signed link (consult.notify.links).

The delivery worker creates one row per notification that carries a link (:func:`ensure_link`,
idempotent per notification, so a retried email carries the same link); the API consumes it
(:func:`lock_link`, then :func:`use_link` in the transaction that acknowledges the alert).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from store.connection import Connection
from store.users import is_uuid

__all__ = ["AckLinkRow", "ensure_link", "links_of_alert", "lock_link", "use_link"]


@dataclass(frozen=True, slots=True)
class AckLinkRow:
    link_id: str
    outbox_id: int
    org_id: str
    alert_id: int
    recipient_user_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    outcome: str | None


_COLUMNS = (
    "link_id::text AS link_id, outbox_id, org_id, alert_id, recipient_user_id::text AS recipient_user_id, "
    "created_at, expires_at, used_at, outcome"
)


def ensure_link(
    conn: Connection,
    *,
    outbox_id: int,
    org_id: str,
    alert_id: int,
    recipient_user_id: str,
    now: datetime,
    expires_at: datetime,
) -> AckLinkRow:
    """The link of notification ``outbox_id``: created on its first attempt, the same one after."""
    conn.execute(
        "INSERT INTO ack_links (outbox_id, org_id, alert_id, recipient_user_id, created_at, expires_at) "
        "VALUES (%s, %s, %s, %s::uuid, %s, %s) ON CONFLICT (outbox_id) DO NOTHING",
        (outbox_id, org_id, alert_id, recipient_user_id, now, expires_at),
    )
    with conn.cursor(row_factory=class_row(AckLinkRow)) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM ack_links WHERE outbox_id = %s",  # noqa: S608 - constant columns
            (outbox_id,),
        ).fetchone()
    if row is None:  # pragma: no cover - inserted above
        raise RuntimeError("ack link vanished")
    return row


def lock_link(conn: Connection, link_id: str) -> AckLinkRow | None:
    """The link row, locked for the caller's transaction (None for an unknown or malformed id)."""
    if not is_uuid(link_id):
        return None
    with conn.cursor(row_factory=class_row(AckLinkRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM ack_links WHERE link_id = %s::uuid FOR UPDATE",  # noqa: S608
            (link_id,),
        ).fetchone()


def use_link(conn: Connection, link_id: str, now: datetime, *, outcome: str) -> bool:
    """Spend the link; False when it was spent already."""
    cur = conn.execute(
        "UPDATE ack_links SET used_at = %s, outcome = %s WHERE link_id = %s::uuid AND used_at IS NULL",
        (now, outcome, link_id),
    )
    return cur.rowcount == 1


def links_of_alert(conn: Connection, alert_id: int) -> list[AckLinkRow]:
    with conn.cursor(row_factory=class_row(AckLinkRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM ack_links WHERE alert_id = %s ORDER BY created_at, link_id",  # noqa: S608
            (alert_id,),
        ).fetchall()
