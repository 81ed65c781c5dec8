"""The consult-rooms aggregate: one video room per consult request, its participants and call events.

A participant's ``generation`` is written into their join link; bumping it (or removing the
participant) makes every link minted before refuse to join. The database keeps a room to four live
participants, one live patient and one live seat per user (see migration 0041); violations surface
as :class:`~store.errors.Conflict` with ``why`` one of ``room_full``, ``duplicate_user``,
``second_patient``. Functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import psycopg

from store.connection import Connection
from store.errors import Conflict

__all__ = [
    "CallEventRow",
    "JoinRefusalRow",
    "NewCallEvent",
    "ParticipantRow",
    "RoomRow",
    "add_participant",
    "bump_generation",
    "call_events",
    "create_room",
    "end_room",
    "get_participant",
    "get_room",
    "join_refusals",
    "mark_room_started",
    "participant_seconds",
    "participants",
    "record_call_events",
    "record_join_refusal",
    "remove_participant",
    "reschedule_room",
    "room_for_request",
]

_ROOM: Final = (
    "room_id, org_id, request_id, patient_id, status, scheduled_start, scheduled_end, created_at, created_by, "
    "started_at, ended_at, ended_by"
)
_PARTICIPANT: Final = (
    "participant_id, room_id, org_id, role, user_id, guest_label, generation, added_at, added_by, "
    "removed_at, removed_by"
)
_EVENT: Final = "event_id, room_id, org_id, participant_id, kind, at, in_call_s, detail"


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    org_id: str
    request_id: int
    patient_id: str
    status: str
    scheduled_start: datetime | None
    scheduled_end: datetime | None
    created_at: datetime
    created_by: str
    started_at: datetime | None
    ended_at: datetime | None
    ended_by: str | None


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    participant_id: str
    room_id: str
    org_id: str
    role: str
    user_id: str | None
    guest_label: str | None
    generation: int
    added_at: datetime
    added_by: str
    removed_at: datetime | None
    removed_by: str | None


@dataclass(frozen=True, slots=True)
class NewCallEvent:
    room_id: str
    participant_id: str | None
    kind: str
    at: datetime
    in_call_s: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CallEventRow:
    event_id: int
    room_id: str
    org_id: str
    participant_id: str | None
    kind: str
    at: datetime
    in_call_s: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class JoinRefusalRow:
    refusal_id: int
    at: datetime
    room_id: str
    participant_id: str | None
    reason: str


def create_room(
    conn: Connection,
    *,
    room_id: str,
    org_id: str,
    request_id: int,
    patient_id: str,
    scheduled_start: datetime | None,
    scheduled_end: datetime | None,
    created_by: str,
    at: datetime,
) -> RoomRow:
    """The room of a consult request; Conflict(why='room_exists') if the request has one."""
    try:
        row = conn.execute(
            "INSERT INTO consult_rooms (room_id, org_id, request_id, patient_id, scheduled_start, scheduled_end, "  # noqa: S608 - constant column list
            f"created_at, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_ROOM}",
            (room_id, org_id, request_id, patient_id, scheduled_start, scheduled_end, at, created_by),
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("consult_room", str(request_id), "room_exists") from exc
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("room insert returned nothing")
    return RoomRow(*row)


def get_room(conn: Connection, room_id: str, *, for_update: bool = False) -> RoomRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(f"SELECT {_ROOM} FROM consult_rooms WHERE room_id = %s{lock}", (room_id,)).fetchone()  # noqa: S608 - constant parts
    return None if row is None else RoomRow(*row)


def room_for_request(conn: Connection, request_id: int) -> RoomRow | None:
    row = conn.execute(f"SELECT {_ROOM} FROM consult_rooms WHERE request_id = %s", (request_id,)).fetchone()  # noqa: S608 - constant column list
    return None if row is None else RoomRow(*row)


def reschedule_room(conn: Connection, room_id: str, *, start: datetime | None, end: datetime | None) -> None:
    conn.execute(
        "UPDATE consult_rooms SET scheduled_start = %s, scheduled_end = %s WHERE room_id = %s", (start, end, room_id)
    )


def mark_room_started(conn: Connection, room_id: str, at: datetime) -> None:
    """Record when the call first had someone in it (kept on later calls)."""
    conn.execute("UPDATE consult_rooms SET started_at = %s WHERE room_id = %s AND started_at IS NULL", (at, room_id))


def end_room(conn: Connection, room_id: str, *, ended_by: str, at: datetime) -> RoomRow | None:
    """Close an open room; None if it was not open (already ended, or absent)."""
    row = conn.execute(
        f"UPDATE consult_rooms SET status = 'ended', ended_at = %s, ended_by = %s "  # noqa: S608 - constant column list
        f"WHERE room_id = %s AND status = 'open' RETURNING {_ROOM}",
        (at, ended_by, room_id),
    ).fetchone()
    return None if row is None else RoomRow(*row)


def add_participant(
    conn: Connection,
    *,
    participant_id: str,
    room_id: str,
    org_id: str,
    role: str,
    user_id: str | None,
    guest_label: str | None,
    added_by: str,
    at: datetime,
) -> ParticipantRow:
    try:
        row = conn.execute(
            "INSERT INTO consult_room_participants (participant_id, room_id, org_id, role, user_id, guest_label, "  # noqa: S608 - constant column list
            f"added_at, added_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_PARTICIPANT}",
            (participant_id, room_id, org_id, role, user_id, guest_label, at, added_by),
        ).fetchone()
    except psycopg.errors.CheckViolation as exc:
        if exc.diag.constraint_name == "consult_room_participants_max_four":
            raise Conflict("consult_room", room_id, "room_full") from exc
        raise
    except psycopg.errors.UniqueViolation as exc:
        why = (
            "second_patient"
            if exc.diag.constraint_name == "consult_room_participants_one_patient"
            else "duplicate_user"
        )
        raise Conflict("consult_room", room_id, why) from exc
    if row is None:  # pragma: no cover - INSERT ... RETURNING returns the row
        raise RuntimeError("participant insert returned nothing")
    return ParticipantRow(*row)


def get_participant(conn: Connection, participant_id: str) -> ParticipantRow | None:
    row = conn.execute(
        f"SELECT {_PARTICIPANT} FROM consult_room_participants WHERE participant_id = %s",  # noqa: S608 - constant column list
        (participant_id,),
    ).fetchone()
    return None if row is None else ParticipantRow(*row)


def participants(conn: Connection, room_id: str, *, include_removed: bool = False) -> list[ParticipantRow]:
    rows = conn.execute(
        f"SELECT {_PARTICIPANT} FROM consult_room_participants WHERE room_id = %s "  # noqa: S608 - constant column list
        "AND (%s OR removed_at IS NULL) ORDER BY added_at, participant_id",
        (room_id, include_removed),
    ).fetchall()
    return [ParticipantRow(*r) for r in rows]


def remove_participant(
    conn: Connection, participant_id: str, *, removed_by: str, at: datetime
) -> ParticipantRow | None:
    """Take a participant out of the room (their links stop working); None if absent or already removed."""
    row = conn.execute(
        f"UPDATE consult_room_participants SET removed_at = %s, removed_by = %s, generation = generation + 1 "  # noqa: S608 - constant column list
        f"WHERE participant_id = %s AND removed_at IS NULL RETURNING {_PARTICIPANT}",
        (at, removed_by, participant_id),
    ).fetchone()
    return None if row is None else ParticipantRow(*row)


def bump_generation(conn: Connection, participant_id: str) -> int | None:
    """Revoke every join link of a live participant; the new generation, None if absent or removed."""
    row = conn.execute(
        "UPDATE consult_room_participants SET generation = generation + 1 "
        "WHERE participant_id = %s AND removed_at IS NULL RETURNING generation",
        (participant_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def record_call_events(conn: Connection, events: Sequence[NewCallEvent]) -> None:
    """Append call events (the organisation is taken from the room)."""
    if not events:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO consult_call_events (room_id, org_id, participant_id, kind, at, in_call_s, detail) "
            "SELECT %s, org_id, %s, %s, %s, %s, %s FROM consult_rooms WHERE room_id = %s",
            [(e.room_id, e.participant_id, e.kind, e.at, e.in_call_s, e.detail, e.room_id) for e in events],
        )


def call_events(conn: Connection, room_id: str) -> list[CallEventRow]:
    rows = conn.execute(
        f"SELECT {_EVENT} FROM consult_call_events WHERE room_id = %s ORDER BY event_id",  # noqa: S608 - constant column list
        (room_id,),
    ).fetchall()
    return [CallEventRow(*r) for r in rows]


def participant_seconds(conn: Connection, room_id: str) -> dict[str, float]:
    """Seconds each participant spent in the call (sum over their 'left' events)."""
    rows = conn.execute(
        "SELECT participant_id, sum(in_call_s) FROM consult_call_events "
        "WHERE room_id = %s AND kind = 'left' AND participant_id IS NOT NULL GROUP BY participant_id",
        (room_id,),
    ).fetchall()
    return {str(r[0]): float(r[1]) for r in rows}


def record_join_refusal(
    conn: Connection, *, at: datetime, room_id: str, participant_id: str | None, reason: str
) -> None:
    conn.execute(
        "INSERT INTO consult_join_refusals (at, room_id, participant_id, reason) VALUES (%s, %s, %s, %s)",
        (at, room_id[:64], None if participant_id is None else participant_id[:64], reason),
    )


def join_refusals(conn: Connection, *, room_id: str | None = None, limit: int = 1000) -> list[JoinRefusalRow]:
    rows = conn.execute(
        "SELECT refusal_id, at, room_id, participant_id, reason FROM consult_join_refusals "
        "WHERE (%s::text IS NULL OR room_id = %s) ORDER BY refusal_id LIMIT %s",
        (room_id, room_id, limit),
    ).fetchall()
    return [JoinRefusalRow(*r) for r in rows]
