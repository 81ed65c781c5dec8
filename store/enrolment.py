"""The enrolment aggregate: a patient's demographics and conditions, consent to monitoring, the
monitoring episodes, and the versioned alert settings document the engine reads.

- Consent is a history: one row per decision (granted or withdrawn) with the consent text's
  version and the date; the newest row is in force. Rows are never updated.
- An episode of monitoring opens at enrolment (its start date counts the CMS 30-day periods) and
  holds the set-up and education record; at most one episode per patient is open.
- ``patients.settings`` is the alert engine's per-patient document (read on every evaluation, so a
  change applies from the next reading on); ``settings_version`` is bumped on every write and each
  version is kept in ``patient_settings_history``. A writer passes the version it read: a
  concurrent change is a :class:`~store.errors.Conflict`, never a lost update.

Every function runs in the caller's transaction and is scoped by organisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.connection import Connection
from store.errors import Conflict

__all__ = [
    "ConsentRow",
    "EnrolledPatient",
    "EpisodeRow",
    "NewPatient",
    "add_consent",
    "consents",
    "create_patient",
    "current_episode",
    "end_episode",
    "first_reading_at",
    "get_enrolled",
    "latest_consent",
    "open_episode",
    "org_time_zone",
    "put_settings",
    "record_setup",
    "set_org_time_zone",
    "settings_history",
    "update_patient",
]


@dataclass(frozen=True, slots=True)
class NewPatient:
    org_id: str
    patient_id: str
    display_name: str
    mrn: str | None
    birth_date: date | None
    sex: str | None
    phone: str | None
    conditions: tuple[str, ...]
    settings: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EnrolledPatient:
    patient_id: str
    org_id: str
    display_name: str
    mrn: str | None
    birth_date: date | None
    sex: str | None
    phone: str | None
    conditions: list[str]
    settings: dict[str, Any]
    settings_version: int
    enrolled_at: datetime | None
    enrolled_by: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConsentRow:
    consent_id: str
    patient_id: str
    decision: str
    version: str
    decided_on: date
    method: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class EpisodeRow:
    episode_id: str
    patient_id: str
    start_date: date
    end_date: date | None
    setup_at: datetime | None
    setup_by: str | None


_PATIENT_COLS = (
    "patient_id, org_id, display_name, mrn, birth_date, sex, phone, conditions, settings, settings_version, "
    "enrolled_at, enrolled_by::text, created_at"
)
_CONSENT_COLS = "consent_id::text, patient_id, decision, version, decided_on, method, recorded_by::text, recorded_at"
_EPISODE_COLS = "episode_id::text, patient_id, start_date, end_date, setup_at, setup_by::text"


def create_patient(conn: Connection, p: NewPatient, *, by: str, now: datetime) -> EnrolledPatient:
    """Insert the patient (its settings as version 1); :class:`Conflict` when the id is taken."""
    try:
        with conn.transaction(), conn.cursor(row_factory=class_row(EnrolledPatient)) as cur:
            row = cur.execute(
                "INSERT INTO patients (patient_id, org_id, display_name, mrn, birth_date, sex, phone, conditions, "  # noqa: S608
                "settings, settings_version, enrolled_at, enrolled_by, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s, %s) "
                f"RETURNING {_PATIENT_COLS}",
                (
                    p.patient_id,
                    p.org_id,
                    p.display_name,
                    p.mrn,
                    p.birth_date,
                    p.sex,
                    p.phone,
                    list(p.conditions),
                    Jsonb(dict(p.settings)),
                    now,
                    by,
                    now,
                ),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("patient", p.patient_id, "exists already") from exc
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("insert returned nothing")
    _history(conn, row.patient_id, row.org_id, 1, p.settings, by, now)
    return row


def get_enrolled(conn: Connection, patient_id: str, org_id: str, *, for_update: bool = False) -> EnrolledPatient | None:
    lock = " FOR UPDATE" if for_update else ""
    with conn.cursor(row_factory=class_row(EnrolledPatient)) as cur:
        return cur.execute(
            f"SELECT {_PATIENT_COLS} FROM patients WHERE patient_id = %s AND org_id = %s{lock}",  # noqa: S608
            (patient_id, org_id),
        ).fetchone()


_UPDATABLE = frozenset({"display_name", "mrn", "birth_date", "sex", "phone", "conditions"})


def update_patient(conn: Connection, patient_id: str, org_id: str, fields: Mapping[str, Any]) -> None:
    """Set demographics or conditions (only the columns named in ``fields``)."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if not fields:
        return
    names = sorted(fields)
    sets = ", ".join(f"{n} = %s" for n in names)
    values = [list(fields[n]) if n == "conditions" else fields[n] for n in names]
    conn.execute(
        f"UPDATE patients SET {sets} WHERE patient_id = %s AND org_id = %s",  # noqa: S608 - names from _UPDATABLE
        (*values, patient_id, org_id),
    )


def put_settings(
    conn: Connection,
    patient_id: str,
    org_id: str,
    settings: Mapping[str, Any],
    *,
    expected_version: int,
    by: str,
    now: datetime,
) -> int:
    """Replace the settings document if it is still at ``expected_version``; the new version."""
    row = conn.execute(
        "UPDATE patients SET settings = %s, settings_version = settings_version + 1 "
        "WHERE patient_id = %s AND org_id = %s AND settings_version = %s RETURNING settings_version",
        (Jsonb(dict(settings)), patient_id, org_id, expected_version),
    ).fetchone()
    if row is None:
        raise Conflict("patient settings", patient_id, "changed since they were read: reload and try again")
    version = int(row[0])
    _history(conn, patient_id, org_id, version, settings, by, now)
    return version


def _history(
    conn: Connection, patient_id: str, org_id: str, version: int, settings: Mapping[str, Any], by: str, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO patient_settings_history (patient_id, org_id, version, settings, changed_by, changed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (patient_id, org_id, version, Jsonb(dict(settings)), by, now),
    )


def settings_history(conn: Connection, patient_id: str, org_id: str, *, limit: int = 50) -> list[tuple[int, datetime]]:
    """(version, changed at) of the newest ``limit`` versions, newest first."""
    rows = conn.execute(
        "SELECT version, changed_at FROM patient_settings_history WHERE patient_id = %s AND org_id = %s "
        "ORDER BY version DESC LIMIT %s",
        (patient_id, org_id, limit),
    ).fetchall()
    return [(int(r[0]), r[1]) for r in rows]


def add_consent(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    decision: str,
    version: str,
    decided_on: date,
    method: str,
    by: str,
    now: datetime,
) -> ConsentRow:
    with conn.cursor(row_factory=class_row(ConsentRow)) as cur:
        row = cur.execute(
            "INSERT INTO patient_consents (org_id, patient_id, decision, version, decided_on, method, recorded_by, "  # noqa: S608
            f"recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_CONSENT_COLS}",
            (org_id, patient_id, decision, version, decided_on, method, by, now),
        ).fetchone()
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return row


def consents(conn: Connection, patient_id: str, org_id: str, *, limit: int = 100) -> list[ConsentRow]:
    """The consent history, newest first."""
    with conn.cursor(row_factory=class_row(ConsentRow)) as cur:
        return cur.execute(
            f"SELECT {_CONSENT_COLS} FROM patient_consents WHERE patient_id = %s AND org_id = %s "  # noqa: S608
            "ORDER BY recorded_at DESC, consent_id LIMIT %s",
            (patient_id, org_id, limit),
        ).fetchall()


def latest_consent(conn: Connection, patient_id: str, org_id: str) -> ConsentRow | None:
    rows = consents(conn, patient_id, org_id, limit=1)
    return rows[0] if rows else None


def open_episode(conn: Connection, *, org_id: str, patient_id: str, start: date, now: datetime) -> EpisodeRow:
    try:
        with conn.transaction(), conn.cursor(row_factory=class_row(EpisodeRow)) as cur:
            row = cur.execute(
                "INSERT INTO monitoring_episodes (org_id, patient_id, start_date, created_at) "  # noqa: S608
                f"VALUES (%s, %s, %s, %s) RETURNING {_EPISODE_COLS}",
                (org_id, patient_id, start, now),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("monitoring episode", patient_id, "an episode is open already") from exc
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return row


def current_episode(conn: Connection, patient_id: str, org_id: str) -> EpisodeRow | None:
    """The open episode, else the latest one."""
    with conn.cursor(row_factory=class_row(EpisodeRow)) as cur:
        return cur.execute(
            f"SELECT {_EPISODE_COLS} FROM monitoring_episodes WHERE patient_id = %s AND org_id = %s "  # noqa: S608
            "ORDER BY (end_date IS NULL) DESC, start_date DESC LIMIT 1",
            (patient_id, org_id),
        ).fetchone()


def record_setup(conn: Connection, episode_id: str, *, at: datetime, by: str) -> EpisodeRow:
    with conn.cursor(row_factory=class_row(EpisodeRow)) as cur:
        row = cur.execute(
            f"UPDATE monitoring_episodes SET setup_at = %s, setup_by = %s WHERE episode_id = %s "  # noqa: S608
            f"RETURNING {_EPISODE_COLS}",
            (at, by, episode_id),
        ).fetchone()
    if row is None:
        raise Conflict("monitoring episode", episode_id, "does not exist")
    return row


def end_episode(conn: Connection, episode_id: str, *, end: date) -> None:
    conn.execute(
        "UPDATE monitoring_episodes SET end_date = %s WHERE episode_id = %s AND end_date IS NULL", (end, episode_id)
    )


def first_reading_at(conn: Connection, patient_id: str, org_id: str) -> datetime | None:
    row = conn.execute(
        "SELECT min(time) FROM readings WHERE patient_id = %s AND org_id = %s", (patient_id, org_id)
    ).fetchone()
    return None if row is None else row[0]


def org_time_zone(conn: Connection, org_id: str) -> str:
    row = conn.execute("SELECT time_zone FROM organizations WHERE org_id = %s", (org_id,)).fetchone()
    return "UTC" if row is None else str(row[0])


def set_org_time_zone(conn: Connection, org_id: str, zone: str) -> None:
    conn.execute("UPDATE organizations SET time_zone = %s WHERE org_id = %s", (zone, org_id))
