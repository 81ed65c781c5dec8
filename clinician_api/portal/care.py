"""Messages with the care team and the next video consult, as the portal shows them.

:func:`message_threads` reads the patient's own threads with their care team (``store.threads``,
the secure messaging of ``consult.messaging``): the ones the signed-in patient account takes part
in, never a care-team-only thread. :func:`next_consult` is the seam for the video consultation
pages (issue 13 item 4): until it is wired it returns no consult and the portal says "No video
appointment booked". Both run inside the page's audited transaction, so what they read is covered
by the page's one audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store import threads
from store.connection import Connection

__all__ = ["ConsultCard", "ThreadCard", "message_threads", "next_consult"]


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
    """The patient's next (or current) video consult. Not wired yet: none."""
    del conn, org_id, patient_id, user_id, now
    return None
