"""Consult notes (migration 0043): a note per consultation, kept as versions.

A version is a draft until signed; a signed version is read-only (a trigger refuses changing it,
and every DELETE). An amendment is a later version naming the version it amends. A note has at
most one open draft (a unique index). Ids from URLs that are not UUIDs find nothing. Functions run
inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.connection import Connection
from store.errors import Conflict
from store.users import is_uuid

__all__ = [
    "NoteRow",
    "NoteText",
    "VersionRow",
    "add_version",
    "create_note",
    "get_note",
    "list_notes",
    "lock_note",
    "save_draft",
    "sign_draft",
    "versions",
]


@dataclass(frozen=True, slots=True)
class NoteRow:
    note_id: str
    org_id: str
    patient_id: str
    request_id: int | None
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class NoteText:
    subjective: str = ""
    objective: str = ""
    assessment: str = ""
    plan: str = ""


@dataclass(frozen=True, slots=True)
class VersionRow:
    note_id: str
    version: int
    amends_version: int | None
    amend_reason: str | None
    subjective: str
    objective: str
    vitals: list[dict[str, Any]]
    assessment: str
    plan: str
    written_at: datetime
    written_by: str
    signed_at: datetime | None
    signed_by: str | None


_NOTE: Final = "note_id::text AS note_id, org_id, patient_id, request_id, created_at, created_by::text AS created_by"
_VERSION: Final = (
    "note_id::text AS note_id, version, amends_version, amend_reason, subjective, objective, vitals, assessment, "
    "plan, written_at, written_by::text AS written_by, signed_at, signed_by::text AS signed_by"
)


def create_note(
    conn: Connection, *, org_id: str, patient_id: str, request_id: int | None, by: str, now: datetime
) -> NoteRow:
    with conn.cursor(row_factory=class_row(NoteRow)) as cur:
        row = cur.execute(
            "INSERT INTO consult_notes (org_id, patient_id, request_id, created_at, created_by) "  # noqa: S608 - constant column list
            f"VALUES (%s, %s, %s, %s, %s::uuid) RETURNING {_NOTE}",
            (org_id, patient_id, request_id, now, by),
        ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("note insert returned nothing")
    return row


def get_note(conn: Connection, note_id: str) -> NoteRow | None:
    if not is_uuid(note_id):
        return None
    with conn.cursor(row_factory=class_row(NoteRow)) as cur:
        return cur.execute(f"SELECT {_NOTE} FROM consult_notes WHERE note_id = %s::uuid", (note_id,)).fetchone()  # noqa: S608 - constant column list


def lock_note(conn: Connection, note_id: str) -> None:
    """Serialise changes to one note (its versions) until the transaction ends."""
    conn.execute("SELECT 1 FROM consult_notes WHERE note_id = %s::uuid FOR UPDATE", (note_id,))


def list_notes(conn: Connection, org_id: str, patient_id: str, *, limit: int = 100) -> list[NoteRow]:
    with conn.cursor(row_factory=class_row(NoteRow)) as cur:
        return cur.execute(
            f"SELECT {_NOTE} FROM consult_notes WHERE org_id = %s AND patient_id = %s "  # noqa: S608 - constant column list
            "ORDER BY created_at DESC, note_id LIMIT %s",
            (org_id, patient_id, limit),
        ).fetchall()


def versions(conn: Connection, note_id: str) -> list[VersionRow]:
    with conn.cursor(row_factory=class_row(VersionRow)) as cur:
        return cur.execute(
            f"SELECT {_VERSION} FROM consult_note_versions WHERE note_id = %s::uuid ORDER BY version",  # noqa: S608 - constant column list
            (note_id,),
        ).fetchall()


def add_version(
    conn: Connection,
    note_id: str,
    text: NoteText,
    *,
    vitals: list[dict[str, Any]],
    by: str,
    now: datetime,
    amends: tuple[int, str] | None = None,
) -> int:
    """A new draft version (the next number); Conflict(why='draft_open') when one is open already."""
    try:
        row = conn.execute(
            "INSERT INTO consult_note_versions (note_id, version, amends_version, amend_reason, subjective, objective, "
            "vitals, assessment, plan, written_at, written_by) "
            "SELECT %s::uuid, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s, %s, %s, %s::uuid "
            "FROM consult_note_versions WHERE note_id = %s::uuid RETURNING version",
            (
                note_id,
                None if amends is None else amends[0],
                None if amends is None else amends[1],
                text.subjective,
                text.objective,
                Jsonb(vitals),
                text.assessment,
                text.plan,
                now,
                by,
                note_id,
            ),
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("consult_note", note_id, "draft_open") from exc
    if row is None:  # pragma: no cover - INSERT ... SELECT of an aggregate returns one row
        raise RuntimeError("version insert returned nothing")
    return int(row[0])


def save_draft(conn: Connection, note_id: str, text: NoteText, *, by: str, now: datetime) -> int | None:
    """Replace the open draft's text; returns its version, or None when no draft is open."""
    row = conn.execute(
        "UPDATE consult_note_versions SET subjective = %s, objective = %s, assessment = %s, plan = %s, "
        "written_at = %s, written_by = %s::uuid WHERE note_id = %s::uuid AND signed_at IS NULL RETURNING version",
        (text.subjective, text.objective, text.assessment, text.plan, now, by, note_id),
    ).fetchone()
    return None if row is None else int(row[0])


def sign_draft(conn: Connection, note_id: str, *, by: str, now: datetime) -> int | None:
    """Sign the open draft (it is read-only from then on); None when no draft is open."""
    row = conn.execute(
        "UPDATE consult_note_versions SET signed_at = %s, signed_by = %s::uuid "
        "WHERE note_id = %s::uuid AND signed_at IS NULL RETURNING version",
        (now, by, note_id),
    ).fetchone()
    return None if row is None else int(row[0])
