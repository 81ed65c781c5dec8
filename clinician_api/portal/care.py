"""Messages with the care team and the next video consult, as the portal shows them.

:func:`message_threads` reads the patient's own threads with their care team (``store.threads``,
the secure messaging of ``consult.messaging``): the ones the signed-in patient account takes part
in, never a care-team-only thread. :func:`next_consult` is the patient's next video consult
(one in progress or opened now first, else the soonest booked): its join
button leads to ``/consults/{id}/join``, which mints the patient's own link (audited) and opens the
waiting room (``clinician_api.routes.call``). :func:`waiting_for_a_time` lists the patient's
consult requests nobody has booked or opened yet, and :func:`open_slots` the open slots of
clinicians' availability they can pick one from (the same ``store.consult_slots.list_slots`` the
API's ``GET /consult-slots`` reads). All run inside the page's audited transaction, so what they
read is covered by the page's one audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from store import consult_rooms, consult_slots, consults, threads, users
from store.connection import Connection

__all__ = [
    "JOIN_OPENS_BEFORE",
    "SLOT_DAYS",
    "ConsultCard",
    "SlotCard",
    "ThreadCard",
    "bookable",
    "message_threads",
    "next_consult",
    "open_slots",
    "waiting_for_a_time",
]

# A booked appointment's join button turns on this long before it starts (the waiting room holds
# the patient until the clinician admits them anyway).
JOIN_OPENS_BEFORE: Final = timedelta(minutes=15)
# How far ahead the portal offers open slots (the API's default window too).
SLOT_DAYS: Final = 14
_SLOTS_SHOWN: Final = 60


@dataclass(frozen=True, slots=True)
class ThreadCard:
    """One conversation with the care team."""

    thread_id: str
    title: str  # e.g. "Your care team" (never an alert's clinical detail)
    last_at: datetime
    last_from: str  # who wrote last, as the patient knows them ("Nurse Ada", "You")
    unread: int
    url: str  # the thread's page


@dataclass(frozen=True, slots=True)
class ConsultCard:
    """The patient's next video appointment."""

    consult_id: str
    starts_at: datetime | None  # None: "as soon as a clinician is free" (started now)
    with_whom: str
    join_url: str | None  # the patient's own join link (it opens the waiting room); None until open
    join_opens_at: datetime | None = None  # when the join button turns on, if not yet


def message_threads(conn: Connection, *, org_id: str, patient_id: str, user_id: str) -> list[ThreadCard]:
    """The patient's threads with their care team that this account takes part in, newest first."""
    cards = []
    for t in threads.my_threads(conn, user_id, org_id):
        if t.kind != "patient" or t.patient_id != patient_id:
            continue
        last = threads.list_messages(conn, t.thread_id, after_seq=max(t.last_seq - 1, 0), limit=1)
        who = "nobody yet" if not last else "you" if last[0].author_id == user_id else last[0].author_name
        cards.append(
            ThreadCard(
                thread_id=t.thread_id,
                title=t.subject or "Your care team",
                last_at=t.last_message_at or t.created_at,
                last_from=who,
                unread=t.unread,
                url=f"/messages/{t.thread_id}",
            )
        )
    return cards


def next_consult(conn: Connection, *, org_id: str, patient_id: str, user_id: str, now: datetime) -> ConsultCard | None:
    """The patient's next (or current) video consult, or None."""
    del user_id  # the join route mints the link for the patient's seat, whoever holds the account
    cards: list[tuple[int, datetime, ConsultCard]] = []
    for request in consults.consult_requests(conn, org_id=org_id, patient_id=patient_id, limit=50):
        if request.status not in ("requested", "scheduled", "in_progress"):
            continue
        room = consult_rooms.room_for_request(conn, request.request_id)
        slot = consult_slots.slot_for_request(conn, request.request_id)
        if (room is None or room.status != "open") and slot is None:
            continue  # requested, not booked nor opened: nothing to show yet
        clinician = users.get_user(conn, slot.clinician_user_id, org_id=org_id) if slot is not None else None
        card = ConsultCard(
            consult_id=str(request.request_id),
            starts_at=slot.starts_at if slot is not None and request.status != "in_progress" else None,
            with_whom=clinician.display_name if clinician is not None else "",
            join_url=f"/consults/{request.request_id}/join" if room is not None and room.status == "open" else None,
            join_opens_at=slot.starts_at - JOIN_OPENS_BEFORE
            if slot is not None and request.status == "scheduled"
            else None,
        )
        rank = 0 if request.status == "in_progress" else 1 if slot is None else 2
        cards.append((rank, slot.starts_at if slot is not None else request.requested_at, card))
    if not cards:
        return None
    return min(cards, key=lambda c: (c[0], c[1]))[2]


def _unbooked(conn: Connection, request_id: int) -> bool:
    room = consult_rooms.room_for_request(conn, request_id)
    return (room is None or room.status != "open") and consult_slots.slot_for_request(conn, request_id) is None


def waiting_for_a_time(conn: Connection, *, org_id: str, patient_id: str) -> list[str]:
    """Ids of the patient's consult requests with no booked time and no open room, oldest first:
    the ones the patient can pick a slot for."""
    rows = consults.consult_requests(conn, org_id=org_id, patient_id=patient_id, status="requested", limit=50)
    return [str(r.request_id) for r in sorted(rows, key=lambda r: r.requested_at) if _unbooked(conn, r.request_id)]


def bookable(conn: Connection, *, org_id: str, patient_id: str, request_id: int) -> bool:
    """Whether this consult of the patient still waits for a time (requested, no slot, no room)."""
    row = consults.get_consult_request(conn, request_id)
    return (
        row is not None
        and row.org_id == org_id
        and row.patient_id == patient_id
        and row.status == "requested"
        and _unbooked(conn, request_id)
    )


@dataclass(frozen=True, slots=True)
class SlotCard:
    """One open time the patient can choose."""

    slot_id: int
    starts_at: datetime
    ends_at: datetime
    with_whom: str  # the clinician's name as the organisation shows it ("" if unknown)


def open_slots(conn: Connection, *, org_id: str, now: datetime) -> list[SlotCard]:
    """Open slots of the organisation's clinicians from ``now`` for :data:`SLOT_DAYS` days, soonest first."""
    rows = consult_slots.list_slots(
        conn, org_id=org_id, starts_from=now, starts_before=now + timedelta(days=SLOT_DAYS), limit=_SLOTS_SHOWN
    )
    names: dict[str, str] = {}
    cards = []
    for r in rows:
        if r.clinician_user_id not in names:
            user = users.get_user(conn, r.clinician_user_id, org_id=org_id)
            names[r.clinician_user_id] = user.display_name if user is not None else ""
        cards.append(SlotCard(r.slot_id, r.starts_at, r.ends_at, names[r.clinician_user_id]))
    return sorted(cards, key=lambda c: (c.starts_at, c.slot_id))
