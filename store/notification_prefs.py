"""Who a notification goes to and how: per-user notification preferences, and the recipients of
an escalation step (the patient's care-team members by role, the patient's own account).

A user without a preferences row gets the defaults: email and in-app, no quiet hours, UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Final

from psycopg.rows import class_row

from store.connection import Connection
from store.users import is_uuid

__all__ = [
    "CHANNELS",
    "DEFAULT_CHANNELS",
    "Preferences",
    "Recipient",
    "care_team_recipients",
    "get_preferences",
    "patient_recipients",
    "put_preferences",
]

CHANNELS: Final = ("email", "sms", "push", "in_app")
DEFAULT_CHANNELS: Final = ("email", "in_app")


@dataclass(frozen=True, slots=True)
class Preferences:
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    sms_number: str | None = None
    push_token: str | None = None
    time_zone: str = "UTC"
    quiet_start: time | None = None
    quiet_end: time | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """An active user a notification can go to, with their preferences."""

    user_id: str
    role: str
    prefs: Preferences = field(default_factory=Preferences)


_PREFS: Final = (
    "coalesce(p.channels, ARRAY['email', 'in_app']::text[]) AS channels, p.sms_number, p.push_token, "
    "coalesce(p.time_zone, 'UTC') AS time_zone, p.quiet_start, p.quiet_end"
)


@dataclass(frozen=True, slots=True)
class _Row:
    user_id: str
    role: str
    channels: list[str]
    sms_number: str | None
    push_token: str | None
    time_zone: str
    quiet_start: time | None
    quiet_end: time | None

    def recipient(self) -> Recipient:
        prefs = Preferences(
            tuple(self.channels), self.sms_number, self.push_token, self.time_zone, self.quiet_start, self.quiet_end
        )
        return Recipient(self.user_id, self.role, prefs)


def get_preferences(conn: Connection, user_id: str) -> Preferences:
    if not is_uuid(user_id):
        return Preferences()
    row = conn.execute(
        "SELECT channels, sms_number, push_token, time_zone, quiet_start, quiet_end FROM notification_preferences "
        "WHERE user_id = %s::uuid",
        (user_id,),
    ).fetchone()
    return Preferences() if row is None else Preferences(tuple(row[0]), *row[1:])


def put_preferences(conn: Connection, user_id: str, org_id: str, prefs: Preferences, now: datetime) -> None:
    """Store a user's preferences (the time zone is the caller's to check: an IANA name)."""
    conn.execute(
        "INSERT INTO notification_preferences (user_id, org_id, channels, sms_number, push_token, time_zone, "
        "quiet_start, quiet_end, updated_at) VALUES (%s::uuid, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (user_id) DO UPDATE SET channels = EXCLUDED.channels, sms_number = EXCLUDED.sms_number, "
        "push_token = EXCLUDED.push_token, time_zone = EXCLUDED.time_zone, quiet_start = EXCLUDED.quiet_start, "
        "quiet_end = EXCLUDED.quiet_end, updated_at = EXCLUDED.updated_at",
        (
            user_id,
            org_id,
            list(prefs.channels),
            prefs.sms_number,
            prefs.push_token,
            prefs.time_zone,
            prefs.quiet_start,
            prefs.quiet_end,
            now,
        ),
    )


def care_team_recipients(conn: Connection, org_id: str, patient_id: str, roles: Sequence[str]) -> list[Recipient]:
    """Active members of the patient's care teams whose role is one of ``roles`` (each user once)."""
    with conn.cursor(row_factory=class_row(_Row)) as cur:
        rows = cur.execute(
            f"SELECT DISTINCT ON (u.user_id) u.user_id::text AS user_id, u.role, {_PREFS} "  # noqa: S608
            "FROM care_team_patients tp JOIN care_team_members m ON m.team_id = tp.team_id "
            "JOIN users u ON u.user_id = m.user_id AND u.org_id = tp.org_id "
            "LEFT JOIN notification_preferences p ON p.user_id = u.user_id "
            "WHERE tp.org_id = %s AND tp.patient_id = %s AND u.status = 'active' AND u.role = ANY(%s) "
            "ORDER BY u.user_id",
            (org_id, patient_id, list(roles)),
        ).fetchall()
    return [r.recipient() for r in rows]


def patient_recipients(conn: Connection, org_id: str, patient_id: str) -> list[Recipient]:
    """The patient's own active accounts (role ``patient``)."""
    with conn.cursor(row_factory=class_row(_Row)) as cur:
        rows = cur.execute(
            f"SELECT u.user_id::text AS user_id, u.role, {_PREFS} FROM users u "  # noqa: S608
            "LEFT JOIN notification_preferences p ON p.user_id = u.user_id "
            "WHERE u.org_id = %s AND u.patient_id = %s AND u.role = 'patient' AND u.status = 'active' "
            "ORDER BY u.user_id",
            (org_id, patient_id),
        ).fetchall()
    return [r.recipient() for r in rows]
