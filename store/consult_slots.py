"""The availability-slots aggregate: clinicians' bookable time and the consult request booked into it.

Double booking is impossible in the database, not only in this code: a slot holds one request (a
single ``request_id`` column), a request is in at most one slot (unique index
``consult_slots_one_per_request``), and one clinician's live slots never overlap (trigger
``consult_slots_no_overlap``, serialised per clinician by an advisory lock). Functions run inside
the caller's transaction; violations surface as :class:`~store.errors.Conflict` with ``why`` one of
``overlap``, ``not_open``, ``request_booked``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import psycopg

from store.connection import Connection
from store.errors import Conflict, NotFound

__all__ = [
    "SlotRow",
    "add_slot",
    "book_slot",
    "get_slot",
    "list_slots",
    "release_slot",
    "slot_for_request",
    "withdraw_slot",
]

_COLUMNS: Final = (
    "slot_id, org_id, clinician_user_id, starts_at, ends_at, status, request_id, booked_at, booked_by, "
    "created_at, created_by"
)


@dataclass(frozen=True, slots=True)
class SlotRow:
    slot_id: int
    org_id: str
    clinician_user_id: str
    starts_at: datetime
    ends_at: datetime
    status: str
    request_id: int | None
    booked_at: datetime | None
    booked_by: str | None
    created_at: datetime
    created_by: str


def add_slot(
    conn: Connection,
    *,
    org_id: str,
    clinician_user_id: str,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    at: datetime,
) -> SlotRow:
    """Offer ``[starts_at, ends_at)`` of a clinician; Conflict(why='overlap') if it overlaps one of theirs."""
    try:
        row = conn.execute(
            f"INSERT INTO consult_slots (org_id, clinician_user_id, starts_at, ends_at, created_at, created_by) "  # noqa: S608 - constant column list
            f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (org_id, clinician_user_id, starts_at, ends_at, at, created_by),
        ).fetchone()
    except psycopg.errors.ExclusionViolation as exc:
        raise Conflict("consult_slot", clinician_user_id, "overlap") from exc
    assert row is not None  # noqa: S101 - INSERT ... RETURNING returns the row
    return SlotRow(*row)


def get_slot(conn: Connection, slot_id: int) -> SlotRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM consult_slots WHERE slot_id = %s",  # noqa: S608 - constant column list
        (slot_id,),
    ).fetchone()
    return None if row is None else SlotRow(*row)


def slot_for_request(conn: Connection, request_id: int) -> SlotRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM consult_slots WHERE request_id = %s",  # noqa: S608 - constant column list
        (request_id,),
    ).fetchone()
    return None if row is None else SlotRow(*row)


def list_slots(
    conn: Connection,
    *,
    org_id: str,
    starts_from: datetime,
    starts_before: datetime,
    clinician_user_id: str | None = None,
    status: str | None = "open",
    limit: int = 200,
) -> list[SlotRow]:
    """Slots of an organisation starting in ``[starts_from, starts_before)``, earliest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM consult_slots WHERE org_id = %s AND starts_at >= %s AND starts_at < %s "  # noqa: S608 - constant column list
        "AND (%s::text IS NULL OR clinician_user_id = %s) AND (%s::text IS NULL OR status = %s) "
        "ORDER BY starts_at, slot_id LIMIT %s",
        (org_id, starts_from, starts_before, clinician_user_id, clinician_user_id, status, status, limit),
    ).fetchall()
    return [SlotRow(*r) for r in rows]


def book_slot(conn: Connection, *, slot_id: int, org_id: str, request_id: int, booked_by: str, at: datetime) -> SlotRow:
    """Put ``request_id`` into an open slot of ``org_id``.

    Two concurrent bookings of one slot: the second waits for the first's row lock, re-checks
    ``status = 'open'`` on the committed row and finds it booked (Conflict why='not_open').
    """
    try:
        row = conn.execute(
            f"UPDATE consult_slots SET status = 'booked', request_id = %s, booked_at = %s, booked_by = %s "  # noqa: S608 - constant column list
            f"WHERE slot_id = %s AND org_id = %s AND status = 'open' RETURNING {_COLUMNS}",
            (request_id, at, booked_by, slot_id, org_id),
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("consult_request", str(request_id), "request_booked") from exc
    if row is None:
        current = get_slot(conn, slot_id)
        if current is None or current.org_id != org_id:
            raise NotFound("consult_slot", str(slot_id))
        raise Conflict("consult_slot", str(slot_id), "not_open")
    return SlotRow(*row)


def release_slot(conn: Connection, *, request_id: int) -> SlotRow | None:
    """Give the slot holding ``request_id`` back (open again); None if the request held none."""
    row = conn.execute(
        f"UPDATE consult_slots SET status = 'open', request_id = NULL, booked_at = NULL, booked_by = NULL "  # noqa: S608 - constant column list
        f"WHERE request_id = %s RETURNING {_COLUMNS}",
        (request_id,),
    ).fetchone()
    return None if row is None else SlotRow(*row)


def withdraw_slot(conn: Connection, *, slot_id: int, org_id: str) -> SlotRow:
    """Take an open slot off the calendar (a booked one must be released or canceled first)."""
    row = conn.execute(
        f"UPDATE consult_slots SET status = 'withdrawn' WHERE slot_id = %s AND org_id = %s AND status = 'open' "  # noqa: S608 - constant column list
        f"RETURNING {_COLUMNS}",
        (slot_id, org_id),
    ).fetchone()
    if row is None:
        current = get_slot(conn, slot_id)
        if current is None or current.org_id != org_id:
            raise NotFound("consult_slot", str(slot_id))
        raise Conflict("consult_slot", str(slot_id), "not_open")
    return SlotRow(*row)
