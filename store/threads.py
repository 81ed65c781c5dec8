"""The message-threads aggregate: threads about one patient, their participants and read state,
messages and their versions (migration 0042).

A message is never changed: an edit appends a version, a deletion appends a tombstone version
(the tables refuse UPDATE and DELETE). Messages are numbered per thread (``seq``) under the
thread's row lock, so a participant's read state is one number: the highest ``seq`` read.
Ids from URLs that are not UUIDs find nothing. Functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import psycopg
from psycopg.rows import class_row

from store.connection import Connection
from store.errors import Conflict
from store.users import is_uuid

__all__ = [
    "MessageRow",
    "ParticipantRow",
    "ThreadRow",
    "ThreadSummary",
    "VersionRow",
    "add_participants",
    "append_message",
    "append_version",
    "care_team_staff",
    "create_thread",
    "get_message",
    "get_thread",
    "is_participant",
    "list_messages",
    "list_versions",
    "lock_thread",
    "mark_read",
    "my_threads",
    "participant_ids",
    "participants",
    "patient_accounts",
    "remove_participant",
    "thread_ids_of",
    "unread_before",
    "unread_in",
    "unread_total",
]

_THREAD: Final = (
    "thread_id::text AS thread_id, org_id, patient_id, kind, alert_id, subject, created_at, "
    "created_by::text AS created_by, last_seq, last_message_at"
)


@dataclass(frozen=True, slots=True)
class ThreadRow:
    thread_id: str
    org_id: str
    patient_id: str
    kind: str  # 'patient' | 'care_team'
    alert_id: int | None
    subject: str
    created_at: datetime
    created_by: str
    last_seq: int
    last_message_at: datetime | None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    thread_id: str
    patient_id: str
    kind: str
    alert_id: int | None
    subject: str
    created_at: datetime
    last_seq: int
    last_message_at: datetime | None
    unread: int


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    user_id: str
    display_name: str
    role: str
    added_at: datetime
    read_seq: int
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A message as it stands now: its latest version (``deleted`` for a tombstone)."""

    message_id: str
    thread_id: str
    seq: int
    author_id: str
    author_name: str
    created_at: datetime
    version: int
    edited_at: datetime | None  # when the latest version was written, if it is not the first
    body: str | None
    attachment_id: str | None
    media_type: str | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    body: str | None
    attachment_id: str | None
    deleted: bool
    at: datetime
    by_user: str


def create_thread(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    kind: str,
    alert_id: int | None,
    subject: str,
    created_by: str,
    now: datetime,
) -> ThreadRow:
    """A new thread; Conflict(why='thread_exists') when the alert has its care-team thread already."""
    try:
        with conn.cursor(row_factory=class_row(ThreadRow)) as cur:
            row = cur.execute(
                "INSERT INTO message_threads (org_id, patient_id, kind, alert_id, subject, created_at, created_by) "  # noqa: S608 - constant column list
                f"VALUES (%s, %s, %s, %s, %s, %s, %s::uuid) RETURNING {_THREAD}",
                (org_id, patient_id, kind, alert_id, subject, now, created_by),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("message_thread", str(alert_id), "thread_exists") from exc
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("thread insert returned nothing")
    return row


def get_thread(conn: Connection, thread_id: str) -> ThreadRow | None:
    if not is_uuid(thread_id):
        return None
    with conn.cursor(row_factory=class_row(ThreadRow)) as cur:
        return cur.execute(f"SELECT {_THREAD} FROM message_threads WHERE thread_id = %s::uuid", (thread_id,)).fetchone()  # noqa: S608 - constant column list


def lock_thread(conn: Connection, thread_id: str) -> ThreadRow | None:
    """The thread, locked until the transaction ends (writes to one thread are serialised)."""
    with conn.cursor(row_factory=class_row(ThreadRow)) as cur:
        return cur.execute(
            f"SELECT {_THREAD} FROM message_threads WHERE thread_id = %s::uuid FOR UPDATE",  # noqa: S608 - constant column list
            (thread_id,),
        ).fetchone()


def care_team_staff(conn: Connection, org_id: str, patient_id: str) -> list[str]:
    """Active staff (not service accounts) of the care teams that hold the patient."""
    rows = conn.execute(
        "SELECT DISTINCT u.user_id::text FROM care_team_patients p JOIN care_team_members m USING (team_id) "
        "JOIN users u ON u.user_id = m.user_id "
        "WHERE p.patient_id = %s AND p.org_id = %s AND u.status = 'active' "
        "AND u.role IN ('admin', 'clinician', 'nurse', 'care_coordinator') ORDER BY 1",
        (patient_id, org_id),
    ).fetchall()
    return [str(r[0]) for r in rows]


def patient_accounts(conn: Connection, org_id: str, patient_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT user_id::text FROM users WHERE org_id = %s AND patient_id = %s AND role = 'patient' "
        "AND status = 'active' ORDER BY 1",
        (org_id, patient_id),
    ).fetchall()
    return [str(r[0]) for r in rows]


def add_participants(
    conn: Connection, thread: ThreadRow, user_ids: Iterable[str], *, added_by: str | None, now: datetime
) -> int:
    """Add (or bring back) participants; returns how many were not active participants before."""
    added = 0
    for uid in dict.fromkeys(user_ids):
        row = conn.execute(
            "INSERT INTO thread_participants (thread_id, org_id, user_id, added_at, added_by) "
            "VALUES (%s::uuid, %s, %s::uuid, %s, %s::uuid) "
            "ON CONFLICT (thread_id, user_id) DO UPDATE SET removed_at = NULL, added_at = EXCLUDED.added_at, "
            "added_by = EXCLUDED.added_by WHERE thread_participants.removed_at IS NOT NULL RETURNING 1",
            (thread.thread_id, thread.org_id, uid, now, added_by),
        ).fetchone()
        added += row is not None
    return added


def remove_participant(conn: Connection, thread_id: str, user_id: str, now: datetime) -> bool:
    if not is_uuid(user_id):
        return False
    row = conn.execute(
        "UPDATE thread_participants SET removed_at = %s WHERE thread_id = %s::uuid AND user_id = %s::uuid "
        "AND removed_at IS NULL RETURNING 1",
        (now, thread_id, user_id),
    ).fetchone()
    return row is not None


def is_participant(conn: Connection, thread_id: str, user_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM thread_participants WHERE thread_id = %s::uuid AND user_id = %s::uuid AND removed_at IS NULL",
        (thread_id, user_id),
    ).fetchone()
    return row is not None


def participant_ids(conn: Connection, thread_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT user_id::text FROM thread_participants WHERE thread_id = %s::uuid AND removed_at IS NULL ORDER BY 1",
        (thread_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def participants(conn: Connection, thread_id: str) -> list[ParticipantRow]:
    with conn.cursor(row_factory=class_row(ParticipantRow)) as cur:
        return cur.execute(
            "SELECT p.user_id::text AS user_id, u.display_name, u.role, p.added_at, p.read_seq, p.read_at "
            "FROM thread_participants p JOIN users u ON u.user_id = p.user_id "
            "WHERE p.thread_id = %s::uuid AND p.removed_at IS NULL ORDER BY u.role = 'patient' DESC, u.display_name",
            (thread_id,),
        ).fetchall()


def thread_ids_of(conn: Connection, user_id: str, org_id: str) -> list[str]:
    """The threads ``user_id`` takes part in (what a live stream follows)."""
    rows = conn.execute(
        "SELECT thread_id::text FROM thread_participants WHERE user_id = %s::uuid AND org_id = %s "
        "AND removed_at IS NULL",
        (user_id, org_id),
    ).fetchall()
    return [str(r[0]) for r in rows]


def append_message(
    conn: Connection, thread_id: str, *, author_id: str, body: str | None, attachment_id: str | None, now: datetime
) -> tuple[str, int]:
    """A new message at the end of the thread (its version 1); returns (message id, seq)."""
    row = conn.execute(
        "UPDATE message_threads SET last_seq = last_seq + 1, last_message_at = %s WHERE thread_id = %s::uuid "
        "RETURNING last_seq, org_id",
        (now, thread_id),
    ).fetchone()
    if row is None:
        raise Conflict("message_thread", thread_id, "thread_missing")
    seq, org_id = int(row[0]), str(row[1])
    made = conn.execute(
        "INSERT INTO thread_messages (thread_id, org_id, seq, author_id, created_at) "
        "VALUES (%s::uuid, %s, %s, %s::uuid, %s) RETURNING message_id::text",
        (thread_id, org_id, seq, author_id, now),
    ).fetchone()
    if made is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("message insert returned nothing")
    message_id = str(made[0])
    conn.execute(
        "INSERT INTO message_versions (message_id, version, body, attachment_id, deleted, at, by_user) "
        "VALUES (%s::uuid, 1, %s, %s::uuid, false, %s, %s::uuid)",
        (message_id, body, attachment_id, now, author_id),
    )
    return message_id, seq


def append_version(
    conn: Connection,
    message_id: str,
    *,
    body: str | None,
    attachment_id: str | None,
    deleted: bool,
    by: str,
    now: datetime,
) -> int:
    """The next version of a message (the caller holds the thread's lock); returns its number."""
    row = conn.execute(
        "INSERT INTO message_versions (message_id, version, body, attachment_id, deleted, at, by_user) "
        "SELECT %s::uuid, coalesce(max(version), 0) + 1, %s, %s::uuid, %s, %s, %s::uuid "
        "FROM message_versions WHERE message_id = %s::uuid RETURNING version",
        (message_id, body, attachment_id, deleted, now, by, message_id),
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... SELECT of an aggregate returns one row
        raise RuntimeError("version insert returned nothing")
    return int(row[0])


_MESSAGE: Final = (
    "SELECT m.message_id::text AS message_id, m.thread_id::text AS thread_id, m.seq, m.author_id::text AS author_id, "
    "u.display_name AS author_name, m.created_at, v.version, "
    "CASE WHEN v.version > 1 THEN v.at END AS edited_at, v.body, v.attachment_id::text AS attachment_id, "
    "a.media_type, v.deleted "
    "FROM thread_messages m JOIN users u ON u.user_id = m.author_id "
    "CROSS JOIN LATERAL (SELECT * FROM message_versions x WHERE x.message_id = m.message_id "
    "                    ORDER BY x.version DESC LIMIT 1) v "
    "LEFT JOIN message_attachments a ON a.attachment_id = v.attachment_id "
)


def list_messages(conn: Connection, thread_id: str, *, after_seq: int = 0, limit: int = 200) -> list[MessageRow]:
    """Messages after ``after_seq`` in thread order, each as its latest version."""
    with conn.cursor(row_factory=class_row(MessageRow)) as cur:
        return cur.execute(
            _MESSAGE + "WHERE m.thread_id = %s::uuid AND m.seq > %s ORDER BY m.seq LIMIT %s",
            (thread_id, after_seq, limit),
        ).fetchall()


def get_message(conn: Connection, thread_id: str, message_id: str) -> MessageRow | None:
    """One message of ``thread_id`` (None when the id names a message of another thread)."""
    if not is_uuid(message_id):
        return None
    with conn.cursor(row_factory=class_row(MessageRow)) as cur:
        return cur.execute(
            _MESSAGE + "WHERE m.thread_id = %s::uuid AND m.message_id = %s::uuid", (thread_id, message_id)
        ).fetchone()


def list_versions(conn: Connection, message_id: str) -> list[VersionRow]:
    with conn.cursor(row_factory=class_row(VersionRow)) as cur:
        return cur.execute(
            "SELECT version, body, attachment_id::text AS attachment_id, deleted, at, by_user::text AS by_user "
            "FROM message_versions WHERE message_id = %s::uuid ORDER BY version",
            (message_id,),
        ).fetchall()


def mark_read(conn: Connection, thread_id: str, user_id: str, *, through_seq: int, now: datetime) -> int:
    """Move the participant's read mark forward to ``through_seq`` (never back, never past the end);
    returns the mark."""
    row = conn.execute(
        "UPDATE thread_participants p SET read_seq = greatest(p.read_seq, least(%s, t.last_seq)), read_at = %s "
        "FROM message_threads t WHERE t.thread_id = p.thread_id AND p.thread_id = %s::uuid "
        "AND p.user_id = %s::uuid AND p.removed_at IS NULL RETURNING p.read_seq",
        (through_seq, now, thread_id, user_id),
    ).fetchone()
    return 0 if row is None else int(row[0])


def my_threads(conn: Connection, user_id: str, org_id: str, *, limit: int = 100) -> list[ThreadSummary]:
    """The threads ``user_id`` takes part in, latest activity first, with their unread counts."""
    with conn.cursor(row_factory=class_row(ThreadSummary)) as cur:
        return cur.execute(
            "SELECT t.thread_id::text AS thread_id, t.patient_id, t.kind, t.alert_id, t.subject, t.created_at, "
            "t.last_seq, t.last_message_at, "
            "(SELECT count(*) FROM thread_messages m WHERE m.thread_id = t.thread_id AND m.seq > p.read_seq "
            " AND m.author_id <> p.user_id)::int AS unread "
            "FROM thread_participants p JOIN message_threads t USING (thread_id) "
            "WHERE p.user_id = %s::uuid AND p.org_id = %s AND p.removed_at IS NULL "
            "ORDER BY coalesce(t.last_message_at, t.created_at) DESC, t.thread_id LIMIT %s",
            (user_id, org_id, limit),
        ).fetchall()


def unread_total(conn: Connection, user_id: str, org_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM thread_participants p JOIN thread_messages m ON m.thread_id = p.thread_id "
        "AND m.seq > p.read_seq AND m.author_id <> p.user_id "
        "WHERE p.user_id = %s::uuid AND p.org_id = %s AND p.removed_at IS NULL",
        (user_id, org_id),
    ).fetchone()
    return 0 if row is None else int(row[0])


def unread_before(conn: Connection, thread_id: str, user_ids: Sequence[str], seq: int) -> set[str]:
    """Which of ``user_ids`` had an unread message of someone else in the thread before ``seq``."""
    rows = conn.execute(
        "SELECT p.user_id::text FROM thread_participants p WHERE p.thread_id = %s::uuid "
        "AND p.user_id = ANY(%s::uuid[]) AND EXISTS (SELECT 1 FROM thread_messages m "
        "WHERE m.thread_id = p.thread_id AND m.seq > p.read_seq AND m.seq < %s AND m.author_id <> p.user_id)",
        (thread_id, list(user_ids), seq),
    ).fetchall()
    return {str(r[0]) for r in rows}


def unread_in(conn: Connection, thread_id: str, user_id: str) -> int:
    """Messages of others in the thread after the participant's read mark."""
    row = conn.execute(
        "SELECT count(*) FROM thread_participants p JOIN thread_messages m ON m.thread_id = p.thread_id "
        "AND m.seq > p.read_seq AND m.author_id <> p.user_id "
        "WHERE p.thread_id = %s::uuid AND p.user_id = %s::uuid AND p.removed_at IS NULL",
        (thread_id, user_id),
    ).fetchone()
    return 0 if row is None else int(row[0])
