"""Monitoring pauses: a patient's monitoring paused with a reason and an end (migration 0061).

A clinician pauses monitoring for a hospital admission or travel; while a pause is in force the
alert engine raises no missing-data alert for the patient, and reading charts show the pauses
(:func:`pauses_between`). Resuming early sets the effective end (``ends_at``) to the resume time and
keeps the planned one. Functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg.rows import class_row

from store.connection import Connection

__all__ = [
    "PauseRow",
    "add_pause",
    "overlapping_pauses",
    "pauses_between",
    "resume_pauses",
]

_COLUMNS: Final = (
    "pause_id, org_id, patient_id, starts_at, ends_at, planned_ends_at, reason, created_by, created_at, "
    "resumed_by, resumed_at"
)


@dataclass(frozen=True, slots=True)
class PauseRow:
    pause_id: int
    org_id: str
    patient_id: str
    starts_at: datetime
    ends_at: datetime
    planned_ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    resumed_by: str | None
    resumed_at: datetime | None


def add_pause(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str,
    created_at: datetime,
) -> PauseRow:
    """Record a pause (the caller validated it; the table's checks refuse an end before the start)."""
    with conn.cursor(row_factory=class_row(PauseRow)) as cur:
        row = cur.execute(
            "INSERT INTO monitoring_pauses (org_id, patient_id, starts_at, ends_at, planned_ends_at, reason, "  # noqa: S608 - constant column list
            f"created_by, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (org_id, patient_id, starts_at, ends_at, ends_at, reason, created_by, created_at),
        ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("insert returned nothing")
    return row


def resume_pauses(conn: Connection, org_id: str, patient_id: str, at: datetime, *, by: str) -> list[PauseRow]:
    """End every pause of the patient in force at ``at`` (and cancel those not started yet) now."""
    with conn.cursor(row_factory=class_row(PauseRow)) as cur:
        return cur.execute(
            "UPDATE monitoring_pauses SET ends_at = greatest(starts_at + interval '1 microsecond', %(at)s), "  # noqa: S608 - constant column list
            "resumed_by = %(by)s, resumed_at = %(at)s "
            "WHERE org_id = %(org)s AND patient_id = %(patient)s AND ends_at > %(at)s AND resumed_at IS NULL "
            f"RETURNING {_COLUMNS}",
            {"at": at, "by": by, "org": org_id, "patient": patient_id},
        ).fetchall()


def pauses_between(conn: Connection, org_id: str, patient_id: str, start: datetime, end: datetime) -> list[PauseRow]:
    """The patient's pauses overlapping ``[start, end)``, oldest first (for reading charts)."""
    with conn.cursor(row_factory=class_row(PauseRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM monitoring_pauses WHERE org_id = %s AND patient_id = %s "  # noqa: S608 - constant column list
            "AND starts_at < %s AND ends_at > %s ORDER BY starts_at, pause_id",
            (org_id, patient_id, end, start),
        ).fetchall()


def overlapping_pauses(
    conn: Connection, patient_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """``(starts_at, ends_at)`` of the patients' pauses overlapping ``[start, end)``, per patient (the
    alert engine's scheduled round: one query for a chunk of patients)."""
    rows = conn.execute(
        "SELECT patient_id, starts_at, ends_at FROM monitoring_pauses WHERE patient_id = ANY(%s) "
        "AND starts_at < %s AND ends_at > %s ORDER BY patient_id, starts_at",
        (list(patient_ids), end, start),
    ).fetchall()
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    for pid, s, e in rows:
        out.setdefault(str(pid), []).append((s, e))
    return out
