"""Organisations and patients as the platform's core knows them: created (minimal: an id, an
organisation and a display name; ``store.enrolment`` holds the clinical record), and read with the
per-patient settings document the alert engine evaluates with.

Every function runs inside the caller's transaction; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import errors as pgerrors

from store.connection import Connection
from store.errors import Conflict, NotFound

__all__ = ["PatientRow", "create_org", "create_patient", "patients"]


@dataclass(frozen=True, slots=True)
class PatientRow:
    patient_id: str
    org_id: str
    settings: dict[str, Any]


def create_org(conn: Connection, org_id: str, name: str) -> None:
    try:
        conn.execute("INSERT INTO organizations (org_id, name) VALUES (%s, %s)", (org_id, name))
    except pgerrors.UniqueViolation as exc:
        raise Conflict("organisation", org_id, "exists already") from exc
    except pgerrors.CheckViolation as exc:
        raise Conflict("organisation", org_id, "not a valid organisation id") from exc


def create_patient(conn: Connection, *, org_id: str, patient_id: str, display_name: str) -> None:
    try:
        conn.execute(
            "INSERT INTO patients (patient_id, org_id, display_name) VALUES (%s, %s, %s)",
            (patient_id, org_id, display_name),
        )
    except pgerrors.UniqueViolation as exc:
        raise Conflict("patient", patient_id, "exists already") from exc
    except pgerrors.ForeignKeyViolation as exc:
        raise NotFound("organisation", org_id) from exc


def patients(conn: Connection, patient_ids: Sequence[str] | None = None) -> list[PatientRow]:
    """Patients (all, or the given ones) with their organisation and settings document."""
    rows = conn.execute(
        "SELECT patient_id, org_id, settings FROM patients WHERE %s::text[] IS NULL OR patient_id = ANY(%s) "
        "ORDER BY patient_id",
        (None if patient_ids is None else list(patient_ids), None if patient_ids is None else list(patient_ids)),
    ).fetchall()
    return [PatientRow(r[0], r[1], dict(r[2] or {})) for r in rows]
