"""Video consults over HTTP: request, start now or book into a slot of clinicians' availability,
cancel; the room's participants and their join links; the call's events and time.

Who may do what: a consult belongs to its patient, so it is visible to whoever sees that patient
(the care team, break-glass, the patient themselves) through ``guard("consult", ...)`` — outside
that, a 404 and one ``denied`` audit row. Staff with ``consults`` start, cancel, invite and mint
links; ``consults.book`` (staff and the patient, for themselves) lists open slots and books one.
Every call writes one audit row (``consult.*``), in the transaction of its work.

A join link is ``{api_public_url}/consult/rooms/{room}/join#t={token}``: signed, expiring, bound to
one participant (docs/video.md). ``POST /consults/{id}/my-link`` gives the caller their own seat's
link (a patient their patient seat; a clinician theirs, seated on first ask); ``POST
/consults/{id}/links`` reissues a participant's link and revokes the ones before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Final, Literal

import anyio.from_thread
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from clinician_api.access import Denied, Resolved, guard, patient_basis, register
from clinician_api.audit import Recording, recorded
from clinician_api.auth.roles import Permission, allowed
from clinician_api.context import Db, Info, RequestInfo, Services, Svc
from clinician_api.errors import Conflict, Forbidden, Invalid, NotFound
from clinician_api.security import Principal, require
from clinician_api.video import Video
from consult import scheduling
from consult.errors import ConsultRequestNotFound, ConsultStateError, RoomError, SlotOverlap, SlotUnavailable
from consult.requests import request_video_consult
from consult.video import rooms
from consult.video.links import join_url
from rpm_core.clock import ensure_utc
from store import consult_rooms as rooms_db
from store import consult_slots as slots_db
from store import consults as requests_db
from store import users
from store.connection import Connection
from store.consults import ConsultRequestRow

__all__ = ["router", "video_of"]

router = APIRouter(tags=["consults"])

Status = Literal["requested", "scheduled", "in_progress", "completed", "canceled"]
_OPEN: Final = ("requested", "scheduled", "in_progress")


@register("consult")
def _consult(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return Denied()
    row = requests_db.get_consult_request(conn, int(raw))
    if row is None:
        return Denied()
    basis = patient_basis(conn, who, row.patient_id, now) if row.org_id == who.org_id else None
    if basis is None:
        return Denied(row.patient_id)
    return Resolved("consult", raw, row.org_id, row.patient_id, basis, row)


Reader = Annotated[Resolved, Depends(guard("consult", "request_id", Permission.PANEL_READ))]
Manager = Annotated[Resolved, Depends(guard("consult", "request_id", Permission.CONSULTS))]
Booker = Annotated[Resolved, Depends(guard("consult", "request_id", Permission.CONSULTS_BOOK))]
PatientReader = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.PANEL_READ))]
PatientManager = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.CONSULTS))]
SlotReader = Annotated[Principal, Depends(require(Permission.CONSULTS_BOOK))]
SlotWriter = Annotated[Principal, Depends(require(Permission.CONSULTS))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestIn(Strict):
    reason: str = Field(default="", max_length=500)


class BookIn(Strict):
    slot_id: int = Field(ge=1)


class ReissueIn(Strict):
    participant_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")


class GuestIn(Strict):
    role: Literal["interpreter", "family"]
    label: str = Field(min_length=1, max_length=200, description="How the room shows the guest.")


class SlotIn(Strict):
    starts_at: datetime
    ends_at: datetime


class SlotOut(BaseModel):
    slot_id: int
    clinician_user_id: str
    starts_at: datetime
    ends_at: datetime
    status: str
    request_id: int | None


class ParticipantOut(BaseModel):
    participant_id: str
    role: str
    user_id: str | None
    label: str | None
    removed: bool
    in_call_s: float = Field(description="Seconds in the call so far (finished stretches).")


class CallEventOut(BaseModel):
    kind: str
    participant_id: str | None
    at: datetime
    in_call_s: float | None
    detail: str


class RoomOut(BaseModel):
    room_id: str
    status: Literal["open", "ended"]
    scheduled_start: datetime | None
    scheduled_end: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None = Field(description="From the first entry into the call to its end.")
    participants: list[ParticipantOut]
    events: list[CallEventOut]


class ConsultOut(BaseModel):
    request_id: int
    patient_id: str
    alert_id: int | None
    status: Status
    reason: str
    requested_at: datetime
    requested_by: str
    updated_at: datetime
    slot: SlotOut | None = None
    room: RoomOut | None = None


class LinkOut(BaseModel):
    participant_id: str
    role: str
    join_url: str = Field(description="Open it to join; the token is in the fragment (never sent to a server).")
    join_path: str
    expires_at: datetime


class StartOut(BaseModel):
    consult: ConsultOut
    me: LinkOut
    patient: LinkOut


def video_of(request: Request) -> Video:
    video: Video = request.app.state.video
    return video


VideoDep = Annotated[Video, Depends(video_of)]


def _slot(row: slots_db.SlotRow | None) -> SlotOut | None:
    if row is None:
        return None
    return SlotOut(
        slot_id=row.slot_id,
        clinician_user_id=row.clinician_user_id,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status=row.status,
        request_id=row.request_id,
    )


def _room(conn: Connection, room: rooms_db.RoomRow | None) -> RoomOut | None:
    if room is None:
        return None
    seconds = rooms_db.participant_seconds(conn, room.room_id)
    people = rooms_db.participants(conn, room.room_id, include_removed=True)
    events = rooms_db.call_events(conn, room.room_id)
    duration = None
    if room.started_at is not None and room.ended_at is not None:
        duration = max(0.0, (room.ended_at - room.started_at).total_seconds())
    return RoomOut(
        room_id=room.room_id,
        status="ended" if room.status == "ended" else "open",
        scheduled_start=room.scheduled_start,
        scheduled_end=room.scheduled_end,
        started_at=room.started_at,
        ended_at=room.ended_at,
        duration_s=duration,
        participants=[
            ParticipantOut(
                participant_id=p.participant_id,
                role=p.role,
                user_id=p.user_id,
                label=p.guest_label,
                removed=p.removed_at is not None,
                in_call_s=round(seconds.get(p.participant_id, 0.0), 1),
            )
            for p in people
        ],
        events=[
            CallEventOut(kind=e.kind, participant_id=e.participant_id, at=e.at, in_call_s=e.in_call_s, detail=e.detail)
            for e in events
        ],
    )


def consult_out(conn: Connection, row: ConsultRequestRow, *, detail: bool = True) -> ConsultOut:
    room = rooms_db.room_for_request(conn, row.request_id)
    return ConsultOut(
        request_id=row.request_id,
        patient_id=row.patient_id,
        alert_id=row.alert_id,
        status=row.status,
        reason=row.reason,
        requested_at=row.requested_at,
        requested_by=row.requested_by,
        updated_at=row.updated_at,
        slot=_slot(slots_db.slot_for_request(conn, row.request_id)),
        room=_room(conn, room) if detail else None,
    )


def _link(video: Video, svc: Services, room: rooms_db.RoomRow, participant: rooms_db.ParticipantRow) -> LinkOut:
    now = svc.clock.now()
    token = rooms.mint_link(video.signer, video.settings, room, participant, now)
    path = join_url("", room.room_id, token)
    return LinkOut(
        participant_id=participant.participant_id,
        role=participant.role,
        join_url=join_url(svc.settings.api_public_url, room.room_id, token),
        join_path=path,
        expires_at=rooms.link_expiry(video.settings, room, now),
    )


@contextmanager
def _consult_errors() -> Iterator[None]:
    """consult's refusals as API errors (inside ``recorded``: they leave a ``failed`` audit row)."""
    try:
        yield
    except ConsultRequestNotFound as exc:
        raise NotFound() from exc
    except ConsultStateError as exc:
        raise Conflict(f"the consult is {exc.status}: cannot {exc.wanted}", code="consult_state") from exc
    except SlotUnavailable as exc:
        raise Conflict(f"the slot cannot be booked: {exc.why}", code="slot_unavailable") from exc
    except SlotOverlap as exc:
        raise Conflict("the slot overlaps another of your slots", code="slot_overlap") from exc
    except RoomError as exc:
        if exc.why == "participant_not_found":
            raise NotFound() from exc
        raise Conflict(f"the room refuses: {exc.why}", code=exc.why) from exc


def _recorded(
    target: Resolved, conn: Connection, svc: Services, info: RequestInfo, action: str
) -> AbstractContextManager[Recording]:
    return recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action=action,
        object_type="consult",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    )


# ---- consult requests ---------------------------------------------------------------------------


@router.get("/patients/{patient_id}/consults", response_model=list[ConsultOut], summary="A patient's consults")
def patient_consults(target: PatientReader, conn: Db, svc: Svc, info: Info) -> list[ConsultOut]:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="consult.list",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.object_id,
        basis=target.basis,
    ):
        rows = requests_db.consult_requests(conn, org_id=target.org_id, patient_id=target.object_id, limit=100)
        return [consult_out(conn, r, detail=False) for r in rows]


@router.post(
    "/patients/{patient_id}/consults", response_model=ConsultOut, status_code=201, summary="Request a video consult"
)
def create_consult(body: RequestIn, target: PatientManager, conn: Db, svc: Svc, info: Info) -> ConsultOut:
    who = target.caller
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="consult.create",
        object_type="consult",
        patient_id=target.object_id,
        basis=target.basis,
    ) as rec:
        row = request_video_consult(
            conn,
            org_id=target.org_id,
            patient_id=target.object_id,
            alert_id=None,
            at=svc.clock.now(),
            requested_by=who.user_id,
            reason=body.reason.strip(),
        )
        rec.object_id = str(row.request_id)
        return consult_out(conn, row)


@router.get("/consults", response_model=list[ConsultOut], summary="Open consults of my panel")
def my_consults(
    who: Annotated[Principal, Depends(require(Permission.CONSULTS_BOOK))],
    conn: Db,
    svc: Svc,
    info: Info,
    status: Annotated[list[Status] | None, Query()] = None,
) -> list[ConsultOut]:
    wanted = tuple(status or _OPEN)
    now = svc.clock.now()
    with recorded(conn, who, info, svc.clock, action="consult.list", object_type="consult") as rec:
        rows = [
            r
            for s in wanted
            for r in requests_db.consult_requests(conn, org_id=who.org_id, status=s, limit=200)
            if patient_basis(conn, who, r.patient_id, now) is not None
        ]
        rows.sort(key=lambda r: r.requested_at, reverse=True)
        rec.subjects = sorted({r.patient_id for r in rows})
        return [consult_out(conn, r, detail=False) for r in rows]


@router.get("/consults/{request_id}", response_model=ConsultOut, summary="A consult: slot, room, participants, call")
def get_consult(target: Reader, conn: Db, svc: Svc, info: Info) -> ConsultOut:
    with _recorded(target, conn, svc, info, "consult.read"):
        row = requests_db.get_consult_request(conn, int(target.object_id))
        if row is None:  # pragma: no cover - resolved a moment ago
            raise NotFound()
        return consult_out(conn, row)


@router.post("/consults/{request_id}/start", response_model=StartOut, summary="Start the consult now")
def start_consult(target: Manager, conn: Db, svc: Svc, info: Info, video: VideoDep) -> StartOut:
    """Opens (or reuses) the room with the caller seated as clinician, and answers the caller's and
    the patient's join links (the patient's is also what a notification or the portal hands out)."""
    who = target.caller
    with _recorded(target, conn, svc, info, "consult.start"), _consult_errors():
        booking = scheduling.start_now(
            conn,
            org_id=target.org_id,
            request_id=int(target.object_id),
            clinician_user_id=who.user_id,
            patient_user_id=users.patient_user_id(conn, target.org_id, target.patient_id or ""),
            at=svc.clock.now(),
        )
        me = _link(video, svc, booking.room, booking.clinician)
        patient = _link(video, svc, booking.room, booking.patient)
        return StartOut(consult=consult_out(conn, booking.request), me=me, patient=patient)


@router.post("/consults/{request_id}/book", response_model=ConsultOut, summary="Book the consult into a slot")
def book_consult(body: BookIn, target: Booker, conn: Db, svc: Svc, info: Info) -> ConsultOut:
    who = target.caller
    with _recorded(target, conn, svc, info, "consult.book") as rec, _consult_errors():
        rec.reason = f"slot {body.slot_id}"
        booking = scheduling.book(
            conn,
            org_id=target.org_id,
            request_id=int(target.object_id),
            slot_id=body.slot_id,
            patient_user_id=users.patient_user_id(conn, target.org_id, target.patient_id or ""),
            by=who.user_id,
            at=svc.clock.now(),
        )
        return consult_out(conn, booking.request)


@router.post("/consults/{request_id}/cancel", response_model=ConsultOut, summary="Cancel a consult not yet started")
def cancel_consult(target: Manager, conn: Db, svc: Svc, info: Info) -> ConsultOut:
    with _recorded(target, conn, svc, info, "consult.cancel"), _consult_errors():
        row = scheduling.cancel(
            conn, org_id=target.org_id, request_id=int(target.object_id), by=target.caller.user_id, at=svc.clock.now()
        )
        return consult_out(conn, row)


# ---- the room: links, guests --------------------------------------------------------------------


def _open_room(conn: Connection, request_id: int) -> rooms_db.RoomRow:
    room = rooms_db.room_for_request(conn, request_id)
    if room is None or room.status != "open":
        raise Conflict("the consult has no open room: start or book it first", code="no_room")
    return room


@router.post("/consults/{request_id}/my-link", response_model=LinkOut, summary="My join link")
def my_link(target: Booker, conn: Db, svc: Svc, info: Info, video: VideoDep) -> LinkOut:
    """The patient's own seat, or a staff member's clinician seat (added on first ask, if they may
    run consults). Minting does not revoke earlier links (another device keeps working)."""
    who = target.caller
    with _recorded(target, conn, svc, info, "consult.link") as rec, _consult_errors():
        room = _open_room(conn, int(target.object_id))
        seats = rooms_db.participants(conn, room.room_id)
        if who.is_patient:
            seat = next((p for p in seats if p.role == "patient"), None)
        else:
            seat = next((p for p in seats if p.user_id == who.user_id), None)
            if seat is None:
                if not allowed(who.role, Permission.CONSULTS, who.scopes):
                    raise Forbidden("only staff who run consults can take a seat in the call", code="role")
                seat = rooms.invite(
                    conn,
                    room_id=room.room_id,
                    role="clinician",
                    user_id=who.user_id,
                    added_by=who.user_id,
                    at=svc.clock.now(),
                )
        if seat is None:
            raise NotFound()
        rec.reason = f"participant {seat.participant_id}"
        return _link(video, svc, room, seat)


@router.post("/consults/{request_id}/links", response_model=LinkOut, summary="Reissue a participant's link")
def reissue(body: ReissueIn, target: Manager, conn: Db, svc: Svc, info: Info, video: VideoDep) -> LinkOut:
    """A new link for a participant of this consult's room; every link they held before is refused."""
    with _recorded(target, conn, svc, info, "consult.link_reissue") as rec, _consult_errors():
        room = _open_room(conn, int(target.object_id))
        seat = rooms_db.get_participant(conn, body.participant_id)
        if seat is None or seat.room_id != room.room_id or seat.removed_at is not None:
            raise NotFound()
        rec.reason = f"participant {seat.participant_id}"
        rooms_db.bump_generation(conn, seat.participant_id)
        fresh = rooms_db.get_participant(conn, seat.participant_id) or seat
        return _link(video, svc, room, fresh)


@router.post(
    "/consults/{request_id}/guests", response_model=LinkOut, status_code=201, summary="Invite an interpreter or family"
)
def invite_guest(body: GuestIn, target: Manager, conn: Db, svc: Svc, info: Info, video: VideoDep) -> LinkOut:
    with _recorded(target, conn, svc, info, "consult.invite") as rec, _consult_errors():
        room = _open_room(conn, int(target.object_id))
        seat = rooms.invite(
            conn,
            room_id=room.room_id,
            role=body.role,
            user_id=None,
            guest_label=body.label.strip(),
            added_by=target.caller.user_id,
            at=svc.clock.now(),
        )
        rec.reason = f"participant {seat.participant_id} ({seat.role})"
        return _link(video, svc, room, seat)


@router.delete(
    "/consults/{request_id}/participants/{participant_id}", response_model=ConsultOut, summary="Remove a participant"
)
def remove_participant(
    participant_id: str, target: Manager, conn: Db, svc: Svc, info: Info, video: VideoDep
) -> ConsultOut:
    """Their links stop working and, if connected, they leave the call now."""
    with _recorded(target, conn, svc, info, "consult.remove") as rec, _consult_errors():
        room = _open_room(conn, int(target.object_id))
        seat = rooms_db.get_participant(conn, participant_id)
        if seat is None or seat.room_id != room.room_id or seat.removed_at is not None:
            raise NotFound()
        rec.reason = f"participant {seat.participant_id} ({seat.role})"
        rooms.remove(conn, seat.participant_id, removed_by=target.caller.user_id, at=svc.clock.now())
        row = requests_db.get_consult_request(conn, int(target.object_id))
    anyio.from_thread.run(video.hub.evict, room.room_id, seat.participant_id)
    if row is None:  # pragma: no cover
        raise NotFound()
    return consult_out(conn, row)


# ---- availability -------------------------------------------------------------------------------


@router.get("/consult-slots", response_model=list[SlotOut], summary="Open slots of clinicians' availability")
def list_open_slots(
    who: SlotReader,
    conn: Db,
    svc: Svc,
    info: Info,
    starts_from: Annotated[datetime | None, Query(alias="from")] = None,
    days: Annotated[int, Query(ge=1, le=60)] = 14,
) -> list[SlotOut]:
    start = ensure_utc(starts_from) if starts_from is not None else svc.clock.now()
    with recorded(conn, who, info, svc.clock, action="consult_slot.list", object_type="consult_slot"):
        rows = slots_db.list_slots(
            conn, org_id=who.org_id, starts_from=start, starts_before=start + timedelta(days=days), limit=200
        )
    return [s for s in (_slot(r) for r in rows) if s is not None]


@router.post("/consult-slots", response_model=SlotOut, status_code=201, summary="Offer a slot of my availability")
def add_slot(body: SlotIn, who: SlotWriter, conn: Db, svc: Svc, info: Info) -> SlotOut:
    try:
        starts, ends = ensure_utc(body.starts_at), ensure_utc(body.ends_at)
    except ValueError as exc:
        raise Invalid("times need a zone", field="starts_at", code="naive_time") from exc
    if ends <= starts or ends - starts > timedelta(hours=12):
        raise Invalid("a slot ends after it starts, within 12 hours", field="ends_at", code="bad_slot")
    with (
        recorded(conn, who, info, svc.clock, action="consult_slot.create", object_type="consult_slot") as rec,
        _consult_errors(),
    ):
        row = scheduling.add_availability(
            conn,
            org_id=who.org_id,
            clinician_user_id=who.user_id,
            starts_at=starts,
            ends_at=ends,
            by=who.user_id,
            at=svc.clock.now(),
        )
        rec.object_id = str(row.slot_id)
    out = _slot(row)
    assert out is not None  # noqa: S101 - row is a SlotRow
    return out
