"""Messages with the care team and the next video consult, as the portal shows them.

These are the seams for the secure messaging and video consultation work (issue 13 items 1 and 4),
which are built separately: until they are wired here, :func:`message_threads` returns no threads
and :func:`next_consult` no consult, and the portal says "No messages yet" and "No video
appointment booked". Wiring either is one function: read the patient's threads (or their next
consult room and their own join link) and return these shapes; the pages and their tests need
no other change. The functions run inside the page's audited transaction, so what they read is
covered by the page's one audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
    """The patient's threads with their care team, newest first. Not wired yet: none."""
    del conn, org_id, patient_id, user_id
    return []


def next_consult(conn: Connection, *, org_id: str, patient_id: str, user_id: str, now: datetime) -> ConsultCard | None:
    """The patient's next (or current) video consult. Not wired yet: none."""
    del conn, org_id, patient_id, user_id, now
    return None
