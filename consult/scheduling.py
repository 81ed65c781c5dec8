"""Scheduling consults: clinicians' availability, booking a request into a slot, starting now, canceling.

Request statuses move ``requested -> scheduled`` (booked into a slot), ``requested | scheduled ->
in_progress`` (start now, or the first person enters the call), ``in_progress -> completed`` (a
clinician ends the call), ``requested | scheduled -> canceled`` (the slot is given back). Each
operation is one transaction on the caller's connection: the request row is locked first, so two
clinicians acting on one request at once are serialised.

Booking and starting open the consult's room and seat its patient and clinician; the app then
mints their join links with :func:`consult.video.rooms.mint_link`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from consult.errors import ConsultRequestNotFound, ConsultStateError, SlotOverlap, SlotUnavailable
from consult.video import rooms
from rpm_core.clock import ensure_utc
from store import consult_slots as slots_db
from store.connection import Connection
from store.consult_rooms import ParticipantRow, RoomRow, end_room, participants, room_for_request
from store.consults import ConsultRequestRow, get_consult_request, set_consult_status
from store.errors import Conflict, NotFound

__all__ = ["Booking", "add_availability", "book", "cancel", "start_now"]


@dataclass(frozen=True, slots=True)
class Booking:
    request: ConsultRequestRow
    room: RoomRow
    patient: ParticipantRow
    clinician: ParticipantRow
    slot: slots_db.SlotRow | None


def add_availability(
    conn: Connection,
    *,
    org_id: str,
    clinician_user_id: str,
    starts_at: datetime,
    ends_at: datetime,
    by: str,
    at: datetime,
) -> slots_db.SlotRow:
    """Offer a slot of a clinician; :class:`SlotOverlap` if it overlaps one of their live slots."""
    try:
        with conn.transaction():
            return slots_db.add_slot(
                conn,
                org_id=org_id,
                clinician_user_id=clinician_user_id,
                starts_at=ensure_utc(starts_at),
                ends_at=ensure_utc(ends_at),
                created_by=by,
                at=ensure_utc(at),
            )
    except Conflict as exc:
        raise SlotOverlap(clinician_user_id) from exc


def _locked_request(conn: Connection, request_id: int, org_id: str) -> ConsultRequestRow:
    request = get_consult_request(conn, request_id, for_update=True)
    if request is None or request.org_id != org_id:
        raise ConsultRequestNotFound(request_id)
    return request


def _seat(
    conn: Connection, room: RoomRow, *, role: str, user_id: str | None, label: str | None, by: str, at: datetime
) -> ParticipantRow:
    """The room's live participant for this user (or role, for a guest patient), added if absent."""
    for p in participants(conn, room.room_id):
        if p.role == role and (p.user_id == user_id if user_id is not None else role == "patient"):
            return p
    return rooms.invite(conn, room_id=room.room_id, role=role, user_id=user_id, guest_label=label, added_by=by, at=at)


def book(
    conn: Connection,
    *,
    org_id: str,
    request_id: int,
    slot_id: int,
    patient_user_id: str | None,
    by: str,
    at: datetime,
) -> Booking:
    """Book a requested consult into an open slot of ``org_id`` and open its room.

    :class:`SlotUnavailable` when the slot is taken (also by a concurrent booking: the database
    decides), :class:`ConsultStateError` when the request is not ``requested``.
    """
    at = ensure_utc(at)
    with conn.transaction():
        request = _locked_request(conn, request_id, org_id)
        if request.status != "requested":
            raise ConsultStateError(request_id, request.status, "book")
        try:
            slot = slots_db.book_slot(conn, slot_id=slot_id, org_id=org_id, request_id=request_id, booked_by=by, at=at)
        except NotFound as exc:
            raise SlotUnavailable(slot_id, "not_found") from exc
        except Conflict as exc:
            raise SlotUnavailable(slot_id, exc.why) from exc
        updated = set_consult_status(conn, request_id, to="scheduled", allowed_from=("requested",), at=at)
        if updated is None:  # pragma: no cover - the row is locked and was 'requested'
            raise ConsultStateError(request_id, request.status, "book")
        room = rooms.open_room(conn, request=updated, created_by=by, at=at, scheduled=(slot.starts_at, slot.ends_at))
        patient = _seat(conn, room, role="patient", user_id=patient_user_id, label="patient", by=by, at=at)
        clinician = _seat(conn, room, role="clinician", user_id=slot.clinician_user_id, label=None, by=by, at=at)
        return Booking(updated, room, patient, clinician, slot)


def start_now(
    conn: Connection,
    *,
    org_id: str,
    request_id: int,
    clinician_user_id: str,
    patient_user_id: str | None,
    at: datetime,
) -> Booking:
    """Open the consult's room now (a requested or scheduled consult) with this clinician in it.

    A booked slot stays booked (it is the record of when the consult was planned); the request moves
    to ``in_progress`` when someone enters the call.
    """
    at = ensure_utc(at)
    with conn.transaction():
        request = _locked_request(conn, request_id, org_id)
        if request.status not in ("requested", "scheduled", "in_progress"):
            raise ConsultStateError(request_id, request.status, "start")
        room = rooms.open_room(conn, request=request, created_by=clinician_user_id, at=at)
        patient = _seat(
            conn, room, role="patient", user_id=patient_user_id, label="patient", by=clinician_user_id, at=at
        )
        clinician = _seat(
            conn, room, role="clinician", user_id=clinician_user_id, label=None, by=clinician_user_id, at=at
        )
        return Booking(request, room, patient, clinician, slots_db.slot_for_request(conn, request_id))


def cancel(conn: Connection, *, org_id: str, request_id: int, by: str, at: datetime) -> ConsultRequestRow:
    """Cancel a consult not yet started: its slot opens again, its room ends (links stop working)."""
    at = ensure_utc(at)
    with conn.transaction():
        request = _locked_request(conn, request_id, org_id)
        updated = set_consult_status(conn, request_id, to="canceled", allowed_from=("requested", "scheduled"), at=at)
        if updated is None:
            raise ConsultStateError(request_id, request.status, "cancel")
        slots_db.release_slot(conn, request_id=request_id)
        room = room_for_request(conn, request_id)
        if room is not None:
            end_room(conn, room.room_id, ended_by=by, at=at)
        return updated
