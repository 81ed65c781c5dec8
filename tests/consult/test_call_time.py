"""A clinician's time in a call becomes billing time: each ``left`` event of a clinician seat held by
a user of the organisation is one interactive-communication time entry (whole minutes, rounded
down), written with the events; patients, guests and seats of no user are not billed; billing a room
again adds nothing."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from consult.video.rooms import PgRoomDirectory
from store import users
from store.call_time import bill_call_time
from store.consult_rooms import NewCallEvent
from tests.consult.conftest import ORG, T0, later, open_consult


def _clinician(conn: psycopg.Connection) -> str:
    row = users.create_user(conn, org_id=ORG, email="dr@o1.test", display_name="Dr", role="clinician", now=T0)
    return row.user_id


def test_left_events_of_a_clinician_user_become_time_entries_once(conn: psycopg.Connection, db: str) -> None:
    doctor = _clinician(conn)
    consult = open_consult(conn, clinician=doctor)
    other = open_consult(conn, patient_id="patient-2", clinician="dr-without-account")
    directory = PgRoomDirectory(lambda: psycopg.connect(db, autocommit=True))
    room, me, pat = consult.room.room_id, consult.clinician.participant_id, consult.patient.participant_id
    directory.record(
        [
            NewCallEvent(room, me, "joined", T0, detail="in-call"),
            NewCallEvent(room, pat, "left", later(150), in_call_s=120.0, detail="left"),
            NewCallEvent(room, me, "left", later(179), in_call_s=179.5, detail="left"),
            NewCallEvent(
                other.room.room_id, other.clinician.participant_id, "left", later(300), in_call_s=300.0, detail="left"
            ),
        ]
    )
    rows = conn.execute(
        "SELECT clinician_id::text, patient_id, kind, capture, minutes, started_at, ended_at FROM time_entries"
    ).fetchall()
    started = later(179) - timedelta(seconds=179.5)
    assert rows == [(doctor, "patient-1", "interactive_communication", "timer", 2, started, later(179))]
    with conn.transaction():
        assert bill_call_time(conn, room, now=later(400)) == 0  # each event is billed once
    status = conn.execute("SELECT status FROM consult_requests WHERE request_id = %s", (consult.request_id,)).fetchone()
    assert status == ("in_progress",)
