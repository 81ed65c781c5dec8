"""Rooms and their participants: opening a consult's room, inviting, removing, minting join links and
turning a verified link into a :class:`~consult.video.signalling.JoinGrant` (the one database check
of a join: the participant is still in the room and the link's generation is theirs).

Functions taking a ``conn`` run inside the caller's transaction. :class:`PgRoomDirectory` is what
the signalling hub calls (from a worker thread: the store is synchronous).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Final, Protocol, cast

from consult.errors import JoinRefused, RoomError
from consult.video.links import JoinClaims, JoinLinkSigner
from consult.video.settings import VideoSettings
from consult.video.signalling import JoinGrant, Role
from rpm_core.clock import ensure_utc
from store import consult_rooms as db
from store.call_time import bill_call_time
from store.connection import Connection
from store.consults import ConsultRequestRow, set_consult_status
from store.errors import Conflict

__all__ = [
    "ROLES",
    "PgRoomDirectory",
    "RoomDirectory",
    "grant_for",
    "invite",
    "link_expiry",
    "mint_link",
    "new_participant_id",
    "new_room_id",
    "open_room",
    "reissue_link",
    "remove",
]

ROLES: Final = ("patient", "clinician", "interpreter", "family")


def new_room_id() -> str:
    """128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def new_participant_id() -> str:
    """96 random bits, URL-safe (16 characters)."""
    return secrets.token_urlsafe(12)


def open_room(
    conn: Connection,
    *,
    request: ConsultRequestRow,
    created_by: str,
    at: datetime,
    scheduled: tuple[datetime, datetime] | None = None,
) -> db.RoomRow:
    """The room of ``request`` (created now, or the existing one, rescheduled if ``scheduled`` is given)."""
    existing = db.room_for_request(conn, request.request_id)
    if existing is not None:
        if existing.status != "open":
            raise RoomError(existing.room_id, "ended")
        if scheduled is not None:
            db.reschedule_room(conn, existing.room_id, start=scheduled[0], end=scheduled[1])
            existing = db.get_room(conn, existing.room_id) or existing
        return existing
    start, end = scheduled if scheduled is not None else (None, None)
    return db.create_room(
        conn,
        room_id=new_room_id(),
        org_id=request.org_id,
        request_id=request.request_id,
        patient_id=request.patient_id,
        scheduled_start=start,
        scheduled_end=end,
        created_by=created_by,
        at=ensure_utc(at),
    )


def invite(
    conn: Connection,
    *,
    room_id: str,
    role: str,
    user_id: str | None,
    guest_label: str | None = None,
    added_by: str,
    at: datetime,
) -> db.ParticipantRow:
    """Give someone a seat in the room (a user, or an invited guest by label)."""
    if role not in ROLES:
        raise ValueError(f"role is one of {ROLES}")
    room = db.get_room(conn, room_id)
    if room is None:
        raise RoomError(room_id, "not_found")
    if room.status != "open":
        raise RoomError(room_id, "ended")
    try:
        return db.add_participant(
            conn,
            participant_id=new_participant_id(),
            room_id=room_id,
            org_id=room.org_id,
            role=role,
            user_id=user_id,
            guest_label=guest_label,
            added_by=added_by,
            at=ensure_utc(at),
        )
    except Conflict as exc:
        raise RoomError(room_id, exc.why) from exc


def remove(conn: Connection, participant_id: str, *, removed_by: str, at: datetime) -> db.ParticipantRow:
    """Take a participant out: every join link they hold is refused from now on."""
    row = db.remove_participant(conn, participant_id, removed_by=removed_by, at=ensure_utc(at))
    if row is None:
        raise RoomError("", "participant_not_found")
    return row


def link_expiry(settings: VideoSettings, room: db.RoomRow, now: datetime) -> datetime:
    """A scheduled consult's links last until ``video_link_after_end_s`` past its end; others ``video_link_ttl_s``."""
    floor = ensure_utc(now) + timedelta(seconds=settings.video_link_ttl_s)
    if room.scheduled_end is None:
        return floor
    return max(floor, room.scheduled_end + timedelta(seconds=settings.video_link_after_end_s))


def mint_link(
    signer: JoinLinkSigner, settings: VideoSettings, room: db.RoomRow, participant: db.ParticipantRow, now: datetime
) -> str:
    if participant.room_id != room.room_id or participant.removed_at is not None:
        raise RoomError(room.room_id, "participant_not_found")
    return signer.mint(
        room_id=room.room_id,
        participant_id=participant.participant_id,
        generation=participant.generation,
        expires_at=link_expiry(settings, room, now),
    )


def reissue_link(
    conn: Connection, signer: JoinLinkSigner, settings: VideoSettings, participant_id: str, now: datetime
) -> str:
    """A new link for a participant; every link they held before is refused from now on."""
    generation = db.bump_generation(conn, participant_id)
    participant = db.get_participant(conn, participant_id)
    if generation is None or participant is None:
        raise RoomError("", "participant_not_found")
    room = db.get_room(conn, participant.room_id)
    if room is None or room.status != "open":
        raise RoomError(participant.room_id, "ended")
    return mint_link(signer, settings, room, participant, now)


def grant_for(conn: Connection, claims: JoinClaims) -> JoinGrant:
    """What a verified link admits to, checked against the database; :class:`JoinRefused` if nothing."""
    room = db.get_room(conn, claims.room_id)
    pid = claims.participant_id
    if room is None or room.status != "open":
        raise JoinRefused("room_closed", room_id=claims.room_id, participant_id=pid)
    participant = db.get_participant(conn, pid)
    if participant is None:
        raise JoinRefused("unknown_participant", room_id=claims.room_id, participant_id=pid)
    if participant.room_id != room.room_id:
        raise JoinRefused("wrong_room", room_id=claims.room_id, participant_id=pid)
    if participant.removed_at is not None:
        raise JoinRefused("removed", room_id=claims.room_id, participant_id=pid)
    if participant.generation != claims.generation:
        raise JoinRefused("revoked", room_id=claims.room_id, participant_id=pid)
    return JoinGrant(
        room_id=room.room_id,
        participant_id=pid,
        role=cast(Role, participant.role),
        label=participant.guest_label,
        scheduled_end=room.scheduled_end,
    )


class RoomDirectory(Protocol):
    """The signalling hub's view of the database (synchronous: the hub calls it from a thread)."""

    def grant(self, claims: JoinClaims) -> JoinGrant: ...

    def record(self, events: Sequence[db.NewCallEvent]) -> None: ...

    def refused(self, *, at: datetime, room_id: str, participant_id: str | None, why: str) -> None: ...


class PgRoomDirectory:
    """:class:`RoomDirectory` over PostgreSQL; ``connect`` lends a connection (e.g. ``pool.connection``)."""

    def __init__(self, connect: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._connect = connect

    def grant(self, claims: JoinClaims) -> JoinGrant:
        with self._connect() as conn:
            return grant_for(conn, claims)

    def record(self, events: Sequence[db.NewCallEvent]) -> None:
        """Store call events; the first entry into the call starts the consult, ``ended`` completes it,
        and a clinician's ``left`` becomes a time entry for billing (``store.call_time``)."""
        if not events:
            return
        with self._connect() as conn, conn.transaction():
            db.record_call_events(conn, events)
            for e in events:
                if e.kind == "admitted" or (e.kind == "joined" and e.detail == "in-call"):
                    _started(conn, e.room_id, e.at)
                elif e.kind == "ended":
                    _ended(conn, e.room_id, e.participant_id or "", e.at)
            # A clinician's time in the call is billing time (interactive communication).
            for room_id in sorted({e.room_id for e in events if e.kind == "left"}):
                bill_call_time(conn, room_id, now=max(e.at for e in events))

    def refused(self, *, at: datetime, room_id: str, participant_id: str | None, why: str) -> None:
        with self._connect() as conn, conn.transaction():
            db.record_join_refusal(conn, at=at, room_id=room_id, participant_id=participant_id, reason=why)


def _started(conn: Connection, room_id: str, at: datetime) -> None:
    room = db.get_room(conn, room_id)
    if room is None:
        return
    db.mark_room_started(conn, room_id, at)
    set_consult_status(conn, room.request_id, to="in_progress", allowed_from=("requested", "scheduled"), at=at)


def _ended(conn: Connection, room_id: str, by_participant: str, at: datetime) -> None:
    room = db.end_room(conn, room_id, ended_by=by_participant, at=at)
    if room is not None:
        set_consult_status(
            conn, room.request_id, to="completed", allowed_from=("requested", "scheduled", "in_progress"), at=at
        )
