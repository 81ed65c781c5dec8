"""The consult-requests aggregate: requests for a video consultation, created by escalation or a clinician.

An alert asks for at most one consultation: asking again returns the existing request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from store.connection import Connection

__all__ = [
    "CONSULT_STATUSES",
    "ConsultRequestRow",
    "consult_requests",
    "get_consult_request",
    "request_consult",
    "set_consult_status",
]

CONSULT_STATUSES: Final = ("requested", "scheduled", "in_progress", "completed", "canceled")
_COLUMNS: Final = (
    "request_id, org_id, patient_id, alert_id, kind, requested_at, requested_by, reason, status, updated_at"
)


@dataclass(frozen=True, slots=True)
class ConsultRequestRow:
    request_id: int
    org_id: str
    patient_id: str
    alert_id: int | None
    kind: str
    requested_at: datetime
    requested_by: str
    reason: str
    status: str
    updated_at: datetime


def request_consult(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    alert_id: int | None,
    requested_at: datetime,
    requested_by: str,
    reason: str = "",
) -> ConsultRequestRow:
    """Create a video consultation request (inside the caller's transaction) and return it."""
    row = conn.execute(
        f"INSERT INTO consult_requests (org_id, patient_id, alert_id, requested_at, requested_by, reason, updated_at) "  # noqa: S608 - constant column list
        f"VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (alert_id) WHERE alert_id IS NOT NULL DO NOTHING RETURNING {_COLUMNS}",
        (org_id, patient_id, alert_id, requested_at, requested_by, reason, requested_at),
    ).fetchone()
    if row is None:  # this alert already asked for one
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM consult_requests WHERE alert_id = %s",  # noqa: S608 - constant column list
            (alert_id,),
        ).fetchone()
    if row is None:  # pragma: no cover - the conflicting row cannot vanish inside our transaction
        raise RuntimeError("consult request vanished")
    return ConsultRequestRow(*row)


def consult_requests(
    conn: Connection, *, org_id: str, status: str | None = None, patient_id: str | None = None, limit: int = 100
) -> list[ConsultRequestRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM consult_requests WHERE org_id = %s "  # noqa: S608 - constant column list
        "AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR patient_id = %s) "
        "ORDER BY requested_at DESC, request_id DESC LIMIT %s",
        (org_id, status, status, patient_id, patient_id, limit),
    ).fetchall()
    return [ConsultRequestRow(*r) for r in rows]


def get_consult_request(conn: Connection, request_id: int, *, for_update: bool = False) -> ConsultRequestRow | None:
    """One request (locked until the end of the caller's transaction with ``for_update``)."""
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM consult_requests WHERE request_id = %s{lock}",  # noqa: S608 - constant parts
        (request_id,),
    ).fetchone()
    return None if row is None else ConsultRequestRow(*row)


def set_consult_status(
    conn: Connection, request_id: int, *, to: str, allowed_from: tuple[str, ...], at: datetime
) -> ConsultRequestRow | None:
    """Move a request to ``to`` if it is in one of ``allowed_from``; None when it is not (or absent)."""
    if to not in CONSULT_STATUSES or not set(allowed_from) <= set(CONSULT_STATUSES):
        raise ValueError(f"unknown consult status in {to!r} / {allowed_from!r}")
    row = conn.execute(
        f"UPDATE consult_requests SET status = %s, updated_at = %s "  # noqa: S608 - constant column list
        f"WHERE request_id = %s AND status = ANY(%s) RETURNING {_COLUMNS}",
        (to, at, request_id, list(allowed_from)),
    ).fetchone()
    return None if row is None else ConsultRequestRow(*row)
