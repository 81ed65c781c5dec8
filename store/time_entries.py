"""The time-entries aggregate: clinical staff time per patient, by timer or entered by hand.

A timer is an entry without an end (``ended_at`` and ``minutes`` NULL); each user has at most one
running (a unique index), so starting a second is a :class:`~store.errors.Conflict`. Stopping
sets the end and the whole minutes elapsed (rounded down: never more time than was spent). A
manual entry has its start, minutes and a reason. Edits and deletions (a deletion only marks the
row) keep the previous version in ``time_entry_revisions``. Functions run in the caller's
transaction and are scoped by organisation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from store.connection import Connection
from store.errors import Conflict
from store.users import is_uuid

__all__ = [
    "TimeEntryRow",
    "add_manual",
    "delete_entry",
    "edit_entry",
    "entries_for_org",
    "get_entry",
    "list_entries",
    "running_timer",
    "start_timer",
    "stop_timer",
]


@dataclass(frozen=True, slots=True)
class TimeEntryRow:
    entry_id: str
    org_id: str
    patient_id: str
    clinician_id: str
    kind: str
    capture: str
    started_at: datetime
    ended_at: datetime | None
    minutes: int | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


_COLS = (
    "entry_id::text, org_id, patient_id, clinician_id::text, kind, capture, started_at, ended_at, minutes, reason, "
    "created_at, updated_at, deleted_at"
)


def _one(conn: Connection, query: str, params: Sequence[Any]) -> TimeEntryRow | None:
    with conn.cursor(row_factory=class_row(TimeEntryRow)) as cur:
        return cur.execute(query, params).fetchone()


def start_timer(
    conn: Connection, *, org_id: str, patient_id: str, clinician_id: str, kind: str, now: datetime
) -> TimeEntryRow:
    try:
        with conn.transaction():
            row = _one(
                conn,
                "INSERT INTO time_entries (org_id, patient_id, clinician_id, kind, capture, started_at, created_at, "  # noqa: S608
                f"updated_at) VALUES (%s, %s, %s, %s, 'timer', %s, %s, %s) RETURNING {_COLS}",
                (org_id, patient_id, clinician_id, kind, now, now, now),
            )
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("timer", clinician_id, "a timer is running already: stop it first") from exc
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return row


def running_timer(conn: Connection, clinician_id: str, org_id: str) -> TimeEntryRow | None:
    return _one(
        conn,
        f"SELECT {_COLS} FROM time_entries WHERE clinician_id = %s AND org_id = %s "  # noqa: S608
        "AND ended_at IS NULL AND deleted_at IS NULL",
        (clinician_id, org_id),
    )


def stop_timer(conn: Connection, entry_id: str, *, now: datetime) -> TimeEntryRow | None:
    """End a running timer; None when it is not running (any more)."""
    return _one(
        conn,
        "UPDATE time_entries SET ended_at = greatest(%s, started_at), updated_at = %s, "  # noqa: S608
        "minutes = least(1440, floor(extract(epoch FROM greatest(%s, started_at) - started_at) / 60))::int "
        f"WHERE entry_id = %s AND ended_at IS NULL AND deleted_at IS NULL RETURNING {_COLS}",
        (now, now, now, entry_id),
    )


def add_manual(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    clinician_id: str,
    kind: str,
    started_at: datetime,
    minutes: int,
    reason: str,
    now: datetime,
) -> TimeEntryRow:
    row = _one(
        conn,
        "INSERT INTO time_entries (org_id, patient_id, clinician_id, kind, capture, started_at, ended_at, minutes, "  # noqa: S608
        "reason, created_at, updated_at) VALUES (%s, %s, %s, %s, 'manual', %s, %s, %s, %s, %s, %s) "
        f"RETURNING {_COLS}",
        (
            org_id,
            patient_id,
            clinician_id,
            kind,
            started_at,
            started_at + timedelta(minutes=minutes),
            minutes,
            reason,
            now,
            now,
        ),
    )
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return row


def get_entry(conn: Connection, entry_id: str, *, for_update: bool = False) -> TimeEntryRow | None:
    if not is_uuid(entry_id):
        return None
    lock = " FOR UPDATE" if for_update else ""
    return _one(conn, f"SELECT {_COLS} FROM time_entries WHERE entry_id = %s{lock}", (entry_id,))  # noqa: S608


def _revise(conn: Connection, row: TimeEntryRow, *, by: str, now: datetime, change: str) -> None:
    conn.execute(
        "INSERT INTO time_entry_revisions (entry_id, org_id, revised_at, revised_by, change, previous) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (row.entry_id, row.org_id, now, by, change, Jsonb(asdict(row), dumps=_dumps)),
    )


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


_EDITABLE = frozenset({"kind", "started_at", "minutes", "reason"})


def edit_entry(
    conn: Connection, row: TimeEntryRow, changes: Mapping[str, Any], *, by: str, now: datetime
) -> TimeEntryRow:
    """Apply ``changes`` to a finished entry, keeping the previous version."""
    unknown = set(changes) - _EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    if row.ended_at is None:
        raise Conflict("time entry", row.entry_id, "the timer is still running: stop it first")
    started = changes.get("started_at", row.started_at)
    minutes = changes.get("minutes", row.minutes)
    _revise(conn, row, by=by, now=now, change="edit")
    updated = _one(
        conn,
        "UPDATE time_entries SET kind = %s, started_at = %s, ended_at = %s, minutes = %s, reason = %s, "  # noqa: S608
        f"updated_at = %s WHERE entry_id = %s RETURNING {_COLS}",
        (
            changes.get("kind", row.kind),
            started,
            started + timedelta(minutes=int(minutes or 0)),
            minutes,
            changes.get("reason", row.reason),
            now,
            row.entry_id,
        ),
    )
    if updated is None:  # pragma: no cover - the row was locked by the caller
        raise Conflict("time entry", row.entry_id, "disappeared")
    return updated


def delete_entry(conn: Connection, row: TimeEntryRow, *, by: str, now: datetime) -> None:
    _revise(conn, row, by=by, now=now, change="delete")
    conn.execute(
        "UPDATE time_entries SET deleted_at = %s, updated_at = %s WHERE entry_id = %s", (now, now, row.entry_id)
    )


def list_entries(
    conn: Connection,
    patient_id: str,
    org_id: str,
    *,
    start: datetime,
    end: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[TimeEntryRow]:
    """A patient's entries started in ``[start, end)``, newest first (keyset on (started_at, id))."""
    with conn.cursor(row_factory=class_row(TimeEntryRow)) as cur:
        return cur.execute(
            f"SELECT {_COLS} FROM time_entries WHERE patient_id = %s AND org_id = %s AND deleted_at IS NULL "  # noqa: S608
            "AND started_at >= %s AND started_at < %s "
            "AND (%s::timestamptz IS NULL OR (started_at, entry_id::text) < (%s, %s)) "
            "ORDER BY started_at DESC, entry_id::text DESC LIMIT %s",
            (
                patient_id,
                org_id,
                start,
                end,
                None if after is None else after[0],
                None if after is None else after[0],
                None if after is None else after[1],
                limit,
            ),
        ).fetchall()


def entries_for_org(conn: Connection, org_id: str, *, start: datetime, end: datetime) -> list[TimeEntryRow]:
    """Every finished, not deleted entry of the organisation started in ``[start, end)`` (billing)."""
    with conn.cursor(row_factory=class_row(TimeEntryRow)) as cur:
        return cur.execute(
            f"SELECT {_COLS} FROM time_entries WHERE org_id = %s AND deleted_at IS NULL AND ended_at IS NOT NULL "  # noqa: S608
            "AND started_at >= %s AND started_at < %s ORDER BY patient_id, started_at",
            (org_id, start, end),
        ).fetchall()
