"""The consult-requests aggregate: requests for a video consultation, created by escalation or a clinician.

An alert asks for at most one consultation: asking again returns the existing request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from store.connection import Connection

__all__ = ["CONSULT_STATUSES", "ConsultRequestRow", "consult_requests", "request_consult"]

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
