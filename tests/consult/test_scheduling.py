"""Scheduling against real PostgreSQL: slots, booking (also two connections racing), start now, cancel,
and the room's seats (four at most, one patient, one seat per user)."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from consult import scheduling
from consult.errors import ConsultRequestNotFound, ConsultStateError, RoomError, SlotOverlap, SlotUnavailable
from consult.requests import request_video_consult
from consult.video import rooms
from store.consult_rooms import participants
from store.consult_slots import add_slot, get_slot, list_slots
from store.consults import get_consult_request
from store.errors import Conflict
from tests.consult.conftest import ORG, PATIENT, T0, open_consult


def _request(conn: psycopg.Connection, patient_id: str = PATIENT) -> int:
    with conn.transaction():
        return request_video_consult(
            conn, org_id=ORG, patient_id=patient_id, alert_id=None, at=T0, requested_by="dr-a"
        ).request_id


def _slot(conn: psycopg.Connection, clinician: str = "dr-a", start_h: float = 1, length_min: int = 30) -> int:
    start = T0 + timedelta(hours=start_h)
    return scheduling.add_availability(
        conn,
        org_id=ORG,
        clinician_user_id=clinician,
        starts_at=start,
        ends_at=start + timedelta(minutes=length_min),
        by="admin",
        at=T0,
    ).slot_id


def test_booking_schedules_the_request_and_opens_its_room_with_patient_and_clinician(conn) -> None:
    request_id = _request(conn)
    slot_id = _slot(conn)
    booking = scheduling.book(
        conn, org_id=ORG, request_id=request_id, slot_id=slot_id, patient_user_id="u-pat", by="u-pat", at=T0
    )
    assert booking.request.status == "scheduled"
    assert booking.slot is not None
    assert booking.slot.status == "booked"
    assert booking.slot.request_id == request_id
    assert booking.room.scheduled_start == T0 + timedelta(hours=1)
    assert booking.room.scheduled_end == T0 + timedelta(hours=1, minutes=30)
    seats = {p.role: p for p in participants(conn, booking.room.room_id)}
    assert set(seats) == {"patient", "clinician"}
    assert seats["clinician"].user_id == "dr-a"
    assert seats["patient"].user_id == "u-pat"
    assert list_slots(conn, org_id=ORG, starts_from=T0, starts_before=T0 + timedelta(days=1)) == []


def test_a_slot_is_booked_once_and_a_request_once(conn) -> None:
    first, second = _request(conn), _request(conn, "patient-2")
    slot_a, slot_b = _slot(conn, start_h=1), _slot(conn, start_h=2)
    scheduling.book(conn, org_id=ORG, request_id=first, slot_id=slot_a, patient_user_id=None, by="x", at=T0)
    with pytest.raises(SlotUnavailable) as taken:
        scheduling.book(conn, org_id=ORG, request_id=second, slot_id=slot_a, patient_user_id=None, by="x", at=T0)
    assert taken.value.why == "not_open"
    with pytest.raises(ConsultStateError):  # already scheduled
        scheduling.book(conn, org_id=ORG, request_id=first, slot_id=slot_b, patient_user_id=None, by="x", at=T0)
    assert get_consult_request(conn, second).status == "requested"  # the failed booking left nothing behind
    assert get_slot(conn, slot_b).status == "open"


def test_the_database_refuses_one_request_in_two_slots_even_without_the_status_check(conn) -> None:
    """The unique index holds even for code that skips the request's status check."""
    from store.consult_slots import book_slot

    request_id = _request(conn)
    slot_a, slot_b = _slot(conn, start_h=1), _slot(conn, start_h=2)
    with conn.transaction():
        book_slot(conn, slot_id=slot_a, org_id=ORG, request_id=request_id, booked_by="x", at=T0)
    with pytest.raises(Conflict) as exc, conn.transaction():
        book_slot(conn, slot_id=slot_b, org_id=ORG, request_id=request_id, booked_by="x", at=T0)
    assert exc.value.why == "request_booked"


def test_unknown_or_foreign_slots_and_requests_are_refused(conn) -> None:
    request_id = _request(conn)
    with pytest.raises(SlotUnavailable) as exc:
        scheduling.book(conn, org_id=ORG, request_id=request_id, slot_id=999, patient_user_id=None, by="x", at=T0)
    assert exc.value.why == "not_found"
    conn.execute("INSERT INTO organizations VALUES ('o2', 'Other')")
    with pytest.raises(ConsultRequestNotFound):
        scheduling.book(
            conn, org_id="o2", request_id=request_id, slot_id=_slot(conn), patient_user_id=None, by="x", at=T0
        )


def test_overlapping_slots_of_one_clinician_are_refused_and_other_clinicians_are_free(conn) -> None:
    _slot(conn, "dr-a", start_h=1, length_min=60)
    with pytest.raises(SlotOverlap):
        _slot(conn, "dr-a", start_h=1.5, length_min=60)
    _slot(conn, "dr-a", start_h=2, length_min=30)  # touching [1h, 2h) and [2h, 2.5h) do not overlap
    _slot(conn, "dr-b", start_h=1.5, length_min=60)
    assert len(list_slots(conn, org_id=ORG, starts_from=T0, starts_before=T0 + timedelta(days=1))) == 3


def _wait_until_blocked(observer: psycopg.Connection, pid: int) -> None:
    """Bounded wait for the positive signal that backend ``pid`` waits on a lock."""
    for _ in range(2000):
        row = observer.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row is not None and row[0] == "Lock":
            return
        threading.Event().wait(0.005)
    raise AssertionError("the second booking never waited for the first one's lock")


def _race(db: str, first_op, second_op):
    """Run ``first_op`` in an open transaction on connection A; start ``second_op`` on connection B and
    wait until B is blocked behind A's locks; commit A; return B's outcome (a value or an exception)."""
    outcome: dict[str, object] = {}
    with psycopg.connect(db, autocommit=True) as a, psycopg.connect(db, autocommit=True) as b:
        b_pid = b.info.backend_pid
        tx = a.transaction()
        tx.__enter__()
        first_op(a)

        def run_b() -> None:
            try:
                outcome["value"] = second_op(b)
            except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
                outcome["error"] = exc

        thread = threading.Thread(target=run_b)
        thread.start()
        _wait_until_blocked(a, b_pid)
        tx.__exit__(None, None, None)
        thread.join(timeout=30)
        assert not thread.is_alive()
    return outcome


def test_two_connections_booking_one_slot_at_once_one_wins(conn, db: str) -> None:
    first, second = _request(conn), _request(conn, "patient-2")
    slot_id = _slot(conn)
    from store.consult_slots import book_slot

    outcome = _race(
        db,
        lambda a: book_slot(a, slot_id=slot_id, org_id=ORG, request_id=first, booked_by="a", at=T0),
        lambda b: scheduling.book(
            b, org_id=ORG, request_id=second, slot_id=slot_id, patient_user_id=None, by="b", at=T0
        ),
    )
    assert isinstance(outcome.get("error"), SlotUnavailable), outcome
    assert get_slot(conn, slot_id).request_id == first
    assert get_consult_request(conn, second).status == "requested"


def test_two_connections_adding_overlapping_slots_at_once_one_wins(conn, db: str) -> None:
    start = T0 + timedelta(hours=3)
    outcome = _race(
        db,
        lambda a: add_slot(
            a,
            org_id=ORG,
            clinician_user_id="dr-a",
            starts_at=start,
            ends_at=start + timedelta(hours=1),
            created_by="a",
            at=T0,
        ),
        lambda b: scheduling.add_availability(
            b,
            org_id=ORG,
            clinician_user_id="dr-a",
            starts_at=start + timedelta(minutes=30),
            ends_at=start + timedelta(minutes=90),
            by="b",
            at=T0,
        ),
    )
    assert isinstance(outcome.get("error"), SlotOverlap), outcome
    assert len(list_slots(conn, org_id=ORG, starts_from=T0, starts_before=T0 + timedelta(days=1))) == 1


def test_start_now_then_cancel_is_refused_and_cancel_before_start_frees_the_slot(conn) -> None:
    consult = open_consult(conn)
    assert get_consult_request(conn, consult.request_id).status == "requested"  # in_progress once someone joins
    again = scheduling.start_now(
        conn, org_id=ORG, request_id=consult.request_id, clinician_user_id="dr-a", patient_user_id=None, at=T0
    )
    assert again.room.room_id == consult.room.room_id  # one room per consult
    assert again.clinician.participant_id == consult.clinician.participant_id

    request_id, slot_id = _request(conn, "patient-2"), _slot(conn)
    booking = scheduling.book(
        conn, org_id=ORG, request_id=request_id, slot_id=slot_id, patient_user_id=None, by="x", at=T0
    )
    canceled = scheduling.cancel(conn, org_id=ORG, request_id=request_id, by="dr-a", at=T0)
    assert canceled.status == "canceled"
    assert get_slot(conn, slot_id).status == "open"
    from store.consult_rooms import get_room

    assert get_room(conn, booking.room.room_id).status == "ended"
    with pytest.raises(ConsultStateError):
        scheduling.cancel(conn, org_id=ORG, request_id=request_id, by="dr-a", at=T0)
    with pytest.raises(ConsultStateError):
        scheduling.start_now(
            conn, org_id=ORG, request_id=request_id, clinician_user_id="dr-a", patient_user_id=None, at=T0
        )


def test_a_room_seats_four_one_patient_and_each_user_once(conn) -> None:
    consult = open_consult(conn)
    room_id = consult.room.room_id
    with conn.transaction():
        rooms.invite(
            conn, room_id=room_id, role="interpreter", user_id=None, guest_label="Interpreter", added_by="dr-a", at=T0
        )
    with pytest.raises(RoomError) as dup:
        rooms.invite(conn, room_id=room_id, role="clinician", user_id="dr-a", added_by="dr-a", at=T0)
    assert dup.value.why == "duplicate_user"
    with pytest.raises(RoomError) as second:
        rooms.invite(conn, room_id=room_id, role="patient", user_id="u-other", added_by="dr-a", at=T0)
    assert second.value.why == "second_patient"
    fourth = rooms.invite(
        conn, room_id=room_id, role="family", user_id=None, guest_label="Daughter", added_by="dr-a", at=T0
    )
    with pytest.raises(RoomError) as full:
        rooms.invite(conn, room_id=room_id, role="clinician", user_id="dr-b", added_by="dr-a", at=T0)
    assert full.value.why == "room_full"
    rooms.remove(conn, fourth.participant_id, removed_by="dr-a", at=T0)  # a removed seat frees a place
    rooms.invite(conn, room_id=room_id, role="clinician", user_id="dr-b", added_by="dr-a", at=T0)
    assert len(participants(conn, room_id)) == 4


def test_two_connections_adding_the_fifth_participant_at_once_one_wins(conn, db: str) -> None:
    consult = open_consult(conn)
    room_id = consult.room.room_id
    rooms.invite(conn, room_id=room_id, role="family", user_id=None, guest_label="Son", added_by="dr-a", at=T0)

    def add(user: str):
        return lambda c: rooms.invite(c, room_id=room_id, role="clinician", user_id=user, added_by="dr-a", at=T0)

    outcome = _race(db, add("dr-b"), add("dr-c"))
    error = outcome.get("error")
    assert isinstance(error, RoomError), outcome
    assert error.why == "room_full"
    assert len(participants(conn, room_id)) == 4
