"""Follow-up tasks of the care team (migration 0043): re-measure, change thresholds, schedule the
next consult, other; open until done or canceled. Functions run inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg.rows import class_row

from store.connection import Connection
from store.users import is_uuid

__all__ = ["KINDS", "NewTask", "TaskRow", "close_task", "create_task", "get_task", "open_tasks", "patient_tasks"]

KINDS: Final = ("remeasure", "change_thresholds", "schedule_consult", "other")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    org_id: str
    patient_id: str
    note_id: str | None
    kind: str
    detail: str
    metrics: Sequence[str]
    due_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class TaskRow:
    task_id: str
    org_id: str
    patient_id: str
    note_id: str | None
    kind: str
    detail: str
    metrics: list[str]
    due_at: datetime
    status: str
    created_at: datetime
    created_by: str
    closed_at: datetime | None
    closed_by: str | None
    close_note: str | None


_TASK: Final = (
    "task_id::text AS task_id, org_id, patient_id, note_id::text AS note_id, kind, detail, metrics, due_at, status, "
    "created_at, created_by::text AS created_by, closed_at, closed_by::text AS closed_by, close_note"
)


def create_task(conn: Connection, t: NewTask, now: datetime) -> TaskRow:
    with conn.cursor(row_factory=class_row(TaskRow)) as cur:
        row = cur.execute(
            "INSERT INTO care_tasks (org_id, patient_id, note_id, kind, detail, metrics, due_at, created_at, "  # noqa: S608 - constant column list
            f"created_by) VALUES (%s, %s, %s::uuid, %s, %s, %s, %s, %s, %s::uuid) RETURNING {_TASK}",
            (t.org_id, t.patient_id, t.note_id, t.kind, t.detail, list(t.metrics), t.due_at, now, t.created_by),
        ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("task insert returned nothing")
    return row


def get_task(conn: Connection, task_id: str) -> TaskRow | None:
    if not is_uuid(task_id):
        return None
    with conn.cursor(row_factory=class_row(TaskRow)) as cur:
        return cur.execute(f"SELECT {_TASK} FROM care_tasks WHERE task_id = %s::uuid", (task_id,)).fetchone()  # noqa: S608 - constant column list


def open_tasks(conn: Connection, org_id: str, patient_ids: Sequence[str], *, limit: int = 200) -> list[TaskRow]:
    """Open tasks of ``patient_ids`` (a panel), soonest due first."""
    with conn.cursor(row_factory=class_row(TaskRow)) as cur:
        return cur.execute(
            f"SELECT {_TASK} FROM care_tasks WHERE org_id = %s AND patient_id = ANY(%s) AND status = 'open' "  # noqa: S608 - constant column list
            "ORDER BY due_at, task_id LIMIT %s",
            (org_id, list(patient_ids), limit),
        ).fetchall()


def patient_tasks(conn: Connection, org_id: str, patient_id: str, *, limit: int = 200) -> list[TaskRow]:
    with conn.cursor(row_factory=class_row(TaskRow)) as cur:
        return cur.execute(
            f"SELECT {_TASK} FROM care_tasks WHERE org_id = %s AND patient_id = %s "  # noqa: S608 - constant column list
            "ORDER BY status = 'open' DESC, due_at, task_id LIMIT %s",
            (org_id, patient_id, limit),
        ).fetchall()


def close_task(
    conn: Connection, task_id: str, *, status: str, by: str, note: str | None, now: datetime
) -> TaskRow | None:
    """Close an open task as 'done' or 'canceled'; None when it is not open."""
    with conn.cursor(row_factory=class_row(TaskRow)) as cur:
        return cur.execute(
            "UPDATE care_tasks SET status = %s, closed_at = %s, closed_by = %s::uuid, close_note = %s "  # noqa: S608 - constant column list
            f"WHERE task_id = %s::uuid AND status = 'open' RETURNING {_TASK}",
            (status, now, by, note, task_id),
        ).fetchone()
