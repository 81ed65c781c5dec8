"""Messages with the care team and the next video consult, as the portal shows them.

:func:`message_threads` reads the patient's own threads with their care team (``store.threads``,
the secure messaging of ``consult.messaging``): the ones the signed-in patient account takes part
in, never a care-team-only thread. :func:`next_consult` is the patient's next video consult
(one in progress or opened now first, else the soonest booked): its join
button leads to ``/consults/{id}/join``, which mints the patient's own link (audited) and opens the
waiting room (``clinician_api.routes.call``). Both run inside the page's audited transaction, so
what they read is covered by the page's one audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from store import consult_rooms, consult_slots, consults, threads, users
from store.connection import Connection

__all__ = ["JOIN_OPENS_BEFORE", "ConsultCard", "ThreadCard", "message_threads", "next_consult"]

# A booked appointment's join button turns on this long before it starts (the waiting room holds
# the patient until the clinician admits them anyway).
JOIN_OPENS_BEFORE: Final = timedelta(minutes=15)


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
