"""Billing time from video calls: a clinician's time in a call becomes a time entry.

Every ``left`` call event of a live or former clinician seat that names a user of the room's
organisation yields one ``time_entries`` row (kind ``interactive_communication``, capture
``timer``: measured, not typed), started ``in_call_s`` before the event, with whole minutes
(rounded down, as the timer does). ``call_event_id`` is unique, so billing a room twice adds
nothing. Runs in the caller's transaction (the one that stored the events).
"""

from __future__ import annotations

from datetime import datetime

from store.connection import Connection

__all__ = ["bill_call_time"]


def bill_call_time(conn: Connection, room_id: str, *, now: datetime) -> int:
    """Write the time entries of the room's clinician ``left`` events not billed yet; how many."""
    cur = conn.execute(
        "INSERT INTO time_entries (org_id, patient_id, clinician_id, kind, capture, started_at, ended_at, "
        "minutes, created_at, updated_at, call_event_id) "
        "SELECT r.org_id, r.patient_id, u.user_id, 'interactive_communication', 'timer', "
        "e.at - make_interval(secs => e.in_call_s), e.at, "
        "least(1440, floor(e.in_call_s / 60))::int, %s, %s, e.event_id "
        "FROM consult_call_events e "
        "JOIN consult_rooms r ON r.room_id = e.room_id "
        "JOIN consult_room_participants p ON p.participant_id = e.participant_id "
        "JOIN users u ON u.org_id = r.org_id "
        "AND p.user_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' "
        "AND u.user_id = p.user_id::uuid "
        "WHERE e.room_id = %s AND e.kind = 'left' AND p.role = 'clinician' AND e.in_call_s > 0 "
        "AND NOT EXISTS (SELECT 1 FROM time_entries t WHERE t.call_event_id = e.event_id) "
        "ON CONFLICT (call_event_id) WHERE call_event_id IS NOT NULL DO NOTHING",
        (now, now, room_id),
    )
    return cur.rowcount
