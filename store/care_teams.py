"""The care-teams aggregate: teams of an organisation, their members and panels, and break-glass.

A staff user sees a patient when a team has both of them (:func:`patient_access`), or through an
unexpired break-glass grant. Every query is scoped by organisation; ids from URLs that are not
UUIDs find nothing. Functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg

from store.connection import Connection
from store.errors import Conflict
from store.users import is_uuid

__all__ = [
    "Basis",
    "GrantRow",
    "TeamRow",
    "add_member",
    "add_patient",
    "create_grant",
    "create_team",
    "get_team",
    "list_grants",
    "list_teams",
    "panel_patient_ids",
    "patient_access",
    "patient_org",
    "patients_access",
    "remove_member",
    "remove_patient",
    "review_grant",
    "team_members",
    "team_patients",
]

Basis = Literal["panel", "break_glass"]


@dataclass(frozen=True, slots=True)
class TeamRow:
    team_id: str
    org_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GrantRow:
    grant_id: str
    org_id: str
    user_id: str
    patient_id: str
    reason: str
    granted_at: datetime
    expires_at: datetime
    reviewed_at: datetime | None
    reviewed_by: str | None


_GRANT = (
    "grant_id::text, org_id, user_id::text, patient_id, reason, granted_at, expires_at, reviewed_at, reviewed_by::text"
)


def create_team(conn: Connection, org_id: str, name: str, now: datetime) -> TeamRow:
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO care_teams (org_id, name, created_at) VALUES (%s, %s, %s) "
                "RETURNING team_id::text, org_id, name, created_at",
                (org_id, name, now),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("care team", name, "name already in use") from exc
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return TeamRow(*row)


def get_team(conn: Connection, team_id: str, org_id: str) -> TeamRow | None:
    if not is_uuid(team_id):
        return None
    row = conn.execute(
        "SELECT team_id::text, org_id, name, created_at FROM care_teams WHERE team_id = %s::uuid AND org_id = %s",
        (team_id, org_id),
    ).fetchone()
    return None if row is None else TeamRow(*row)


def list_teams(conn: Connection, org_id: str, *, limit: int = 500) -> list[TeamRow]:
    rows = conn.execute(
        "SELECT team_id::text, org_id, name, created_at FROM care_teams WHERE org_id = %s ORDER BY name LIMIT %s",
        (org_id, limit),
    ).fetchall()
    return [TeamRow(*r) for r in rows]


def add_member(conn: Connection, team: TeamRow, user_id: str, now: datetime) -> bool:
    """Add a user of the team's organisation; False when already a member or not in the organisation."""
    row = conn.execute(
        "INSERT INTO care_team_members (team_id, org_id, user_id, added_at) "
        "SELECT %s::uuid, %s, user_id, %s FROM users WHERE user_id = %s::uuid AND org_id = %s "
        "ON CONFLICT DO NOTHING RETURNING 1",
        (team.team_id, team.org_id, now, user_id, team.org_id),
    ).fetchone()
    return row is not None


def remove_member(conn: Connection, team: TeamRow, user_id: str) -> bool:
    if not is_uuid(user_id):
        return False
    cur = conn.execute(
        "DELETE FROM care_team_members WHERE team_id = %s::uuid AND user_id = %s::uuid", (team.team_id, user_id)
    )
    return cur.rowcount > 0


def add_patient(conn: Connection, team: TeamRow, patient_id: str, now: datetime) -> bool:
    """Add a patient of the team's organisation; False when already there or not in the organisation."""
    row = conn.execute(
        "INSERT INTO care_team_patients (team_id, org_id, patient_id, added_at) "
        "SELECT %s::uuid, %s, patient_id, %s FROM patients WHERE patient_id = %s AND org_id = %s "
        "ON CONFLICT DO NOTHING RETURNING 1",
        (team.team_id, team.org_id, now, patient_id, team.org_id),
    ).fetchone()
    return row is not None


def remove_patient(conn: Connection, team: TeamRow, patient_id: str) -> bool:
    cur = conn.execute(
        "DELETE FROM care_team_patients WHERE team_id = %s::uuid AND patient_id = %s", (team.team_id, patient_id)
    )
    return cur.rowcount > 0


def team_members(conn: Connection, team: TeamRow) -> list[str]:
    rows = conn.execute(
        "SELECT user_id::text FROM care_team_members WHERE team_id = %s::uuid ORDER BY user_id", (team.team_id,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def team_patients(conn: Connection, team: TeamRow, *, after: str | None, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT patient_id FROM care_team_patients WHERE team_id = %s::uuid AND (%s::text IS NULL OR patient_id > %s) "
        "ORDER BY patient_id LIMIT %s",
        (team.team_id, after, after, limit),
    ).fetchall()
    return [str(r[0]) for r in rows]


def patient_org(conn: Connection, patient_id: str) -> str | None:
    row = conn.execute("SELECT org_id FROM patients WHERE patient_id = %s", (patient_id,)).fetchone()
    return None if row is None else str(row[0])


def patient_access(conn: Connection, *, user_id: str, org_id: str, patient_id: str, now: datetime) -> Basis | None:
    """Why ``user_id`` may see ``patient_id`` ('panel' before 'break_glass'), or None."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM care_team_members m JOIN care_team_patients p USING (team_id) "
        "               WHERE m.user_id = %(u)s::uuid AND p.patient_id = %(p)s AND p.org_id = %(o)s), "
        "       EXISTS (SELECT 1 FROM break_glass_grants g WHERE g.user_id = %(u)s::uuid AND g.patient_id = %(p)s "
        "               AND g.org_id = %(o)s AND g.expires_at > %(now)s)",
        {"u": user_id, "p": patient_id, "o": org_id, "now": now},
    ).fetchone()
    if row is None:  # pragma: no cover - SELECT of two EXISTS returns a row
        return None
    if row[0]:
        return "panel"
    return "break_glass" if row[1] else None


def patients_access(
    conn: Connection, *, user_id: str, org_id: str, patient_ids: Sequence[str], now: datetime
) -> dict[str, tuple[str, Basis | None]]:
    """Of ``patient_ids``, each one that exists (in any organisation): its organisation and why
    ``user_id`` may see it ('panel' before 'break_glass'; None when they may not). One statement
    for a whole page of patients."""
    rows = conn.execute(
        "SELECT pt.patient_id, pt.org_id, "
        "  pt.org_id = %(o)s AND EXISTS (SELECT 1 FROM care_team_members m JOIN care_team_patients p USING (team_id) "
        "    WHERE m.user_id = %(u)s::uuid AND p.patient_id = pt.patient_id AND p.org_id = %(o)s), "
        "  pt.org_id = %(o)s AND EXISTS (SELECT 1 FROM break_glass_grants g WHERE g.user_id = %(u)s::uuid "
        "    AND g.patient_id = pt.patient_id AND g.org_id = %(o)s AND g.expires_at > %(now)s) "
        "FROM patients pt WHERE pt.patient_id = ANY(%(ids)s::text[])",
        {"u": user_id, "o": org_id, "ids": list(patient_ids), "now": now},
    ).fetchall()
    out: dict[str, tuple[str, Basis | None]] = {}
    for pid, org, panel, grant in rows:
        basis: Basis | None = "panel" if panel else "break_glass" if grant else None
        out[str(pid)] = (str(org), basis)
    return out


def panel_patient_ids(conn: Connection, user_id: str, org_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT p.patient_id FROM care_team_members m JOIN care_team_patients p USING (team_id) "
        "WHERE m.user_id = %s::uuid AND p.org_id = %s ORDER BY 1",
        (user_id, org_id),
    ).fetchall()
    return [str(r[0]) for r in rows]


def create_grant(
    conn: Connection, *, org_id: str, user_id: str, patient_id: str, reason: str, now: datetime, expires_at: datetime
) -> GrantRow:
    row = conn.execute(
        "INSERT INTO break_glass_grants (org_id, user_id, patient_id, reason, granted_at, expires_at) "  # noqa: S608
        f"VALUES (%s, %s::uuid, %s, %s, %s, %s) RETURNING {_GRANT}",
        (org_id, user_id, patient_id, reason, now, expires_at),
    ).fetchone()
    if row is None:  # pragma: no cover
        raise RuntimeError("insert returned nothing")
    return GrantRow(*row)


def list_grants(
    conn: Connection, org_id: str, *, unreviewed: bool, before: tuple[datetime, str] | None, limit: int
) -> list[GrantRow]:
    """Grants of an organisation, newest first, starting below the key ``before``."""
    rows = conn.execute(
        f"SELECT {_GRANT} FROM break_glass_grants WHERE org_id = %s AND (NOT %s OR reviewed_at IS NULL) "  # noqa: S608
        "AND (%s::timestamptz IS NULL OR (granted_at, grant_id) < (%s, %s::uuid)) "
        "ORDER BY granted_at DESC, grant_id DESC LIMIT %s",
        (
            org_id,
            unreviewed,
            None if before is None else before[0],
            None if before is None else before[0],
            None if before is None else before[1],
            limit,
        ),
    ).fetchall()
    return [GrantRow(*r) for r in rows]


def review_grant(conn: Connection, grant_id: str, *, org_id: str, by: str, now: datetime) -> GrantRow | None:
    if not is_uuid(grant_id):
        return None
    row = conn.execute(
        "UPDATE break_glass_grants SET reviewed_at = coalesce(reviewed_at, %s), "  # noqa: S608
        "reviewed_by = coalesce(reviewed_by, %s::uuid) "
        f"WHERE grant_id = %s::uuid AND org_id = %s RETURNING {_GRANT}",
        (now, by, grant_id, org_id),
    ).fetchone()
    return None if row is None else GrantRow(*row)
