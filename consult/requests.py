"""Video consultation requests: the first piece of care-team communication.

The alert escalation walk asks for a video consultation through :func:`request_video_consult`
(a critical alert left unacknowledged ends here); clinicians will ask through the API. The
care-team communication work schedules, opens rooms for and completes these requests.
"""

from __future__ import annotations

from datetime import datetime

from rpm_core.clock import ensure_utc
from store.connection import Connection
from store.consults import ConsultRequestRow, consult_requests, request_consult

__all__ = ["ConsultRequestRow", "open_requests", "request_video_consult"]


def request_video_consult(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    alert_id: int | None,
    at: datetime,
    requested_by: str,
    reason: str = "",
) -> ConsultRequestRow:
    """Ask for a video consultation (idempotent per alert) inside the caller's transaction."""
    return request_consult(
        conn,
        org_id=org_id,
        patient_id=patient_id,
        alert_id=alert_id,
        requested_at=ensure_utc(at),
        requested_by=requested_by,
        reason=reason,
    )


def open_requests(conn: Connection, *, org_id: str, patient_id: str | None = None) -> list[ConsultRequestRow]:
    """Requests still waiting to be scheduled."""
    return consult_requests(conn, org_id=org_id, status="requested", patient_id=patient_id)
