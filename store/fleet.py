"""The fleet: edge agents as their organisation's admins see them, and the latest status each agent
reported (outbox depth, agent version, alarms; written by ingest from ``.../up/status``).

A status replaces the stored one only when the agent sent it later (workers may commit out of
order). Lists are keyset-paginated by agent id and scoped by organisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from store.connection import Connection

__all__ = [
    "AgentStatusRow",
    "FleetAgent",
    "FleetDevice",
    "agent_in_org",
    "devices_of_agents",
    "fleet",
    "record_statuses",
]


@dataclass(frozen=True, slots=True)
class AgentStatusRow:
    agent_id: str
    org_id: str
    sent_at: datetime
    online: bool
    agent_version: str
    outbox_depth: int
    outbox_oldest: datetime | None
    last_receipt: int
    alarms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FleetAgent:
    agent_id: str
    org_id: str
    status: str
    patient_id: str | None
    created_at: datetime
    activated_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None
    agent_version: str | None
    online: bool | None
    outbox_depth: int | None
    outbox_oldest: datetime | None
    status_at: datetime | None
    alarms: list[str] | None
    gap_ranges: int
    gap_readings: int
    last_gap_at: datetime | None


@dataclass(frozen=True, slots=True)
class FleetDevice:
    device_id: str
    agent_id: str
    profile: str | None
    manufacturer: str | None
    model: str | None
    firmware: str | None
    battery_pct: int | None
    last_seen_at: datetime | None


def record_statuses(conn: Connection, rows: Sequence[AgentStatusRow], *, now: datetime) -> None:
    """Keep each agent's newest status (by the agent's own sent_at)."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO agent_status (agent_id, org_id, sent_at, received_at, online, agent_version, outbox_depth, "
            "outbox_oldest, last_receipt, alarms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (agent_id) DO UPDATE SET sent_at = excluded.sent_at, received_at = excluded.received_at, "
            "online = excluded.online, agent_version = excluded.agent_version, "
            "outbox_depth = excluded.outbox_depth, outbox_oldest = excluded.outbox_oldest, "
            "last_receipt = excluded.last_receipt, alarms = excluded.alarms "
            "WHERE agent_status.sent_at < excluded.sent_at",
            [
                (
                    r.agent_id,
                    r.org_id,
                    r.sent_at,
                    now,
                    r.online,
                    r.agent_version[:128],
                    r.outbox_depth,
                    r.outbox_oldest,
                    r.last_receipt,
                    sorted(r.alarms),
                )
                for r in rows
            ],
        )


_FLEET = (
    "SELECT g.agent_id, g.org_id, g.status, a.patient_id, g.created_at, g.activated_at, g.revoked_at, "
    "g.last_seen_at, coalesce(s.agent_version, g.agent_version) AS agent_version, s.online, s.outbox_depth, "
    "s.outbox_oldest, s.sent_at AS status_at, s.alarms, coalesce(gp.ranges, 0) AS gap_ranges, "
    "coalesce(gp.readings, 0) AS gap_readings, gp.last_at AS last_gap_at "
    "FROM agents g "
    "LEFT JOIN agent_assignments a ON a.agent_id = g.agent_id AND a.valid_to IS NULL "
    "LEFT JOIN agent_status s ON s.agent_id = g.agent_id "
    "LEFT JOIN LATERAL (SELECT count(*)::int AS ranges, sum(last_seq - first_seq + 1)::int AS readings, "
    "  max(reported_at) AS last_at FROM agent_gaps WHERE agent_id = g.agent_id) gp ON true "
)


def fleet(conn: Connection, org_id: str, *, after: str | None, limit: int) -> list[FleetAgent]:
    with conn.cursor(row_factory=class_row(FleetAgent)) as cur:
        return cur.execute(
            _FLEET + "WHERE g.org_id = %s AND (%s::text IS NULL OR g.agent_id > %s) ORDER BY g.agent_id LIMIT %s",
            (org_id, after, after, limit),
        ).fetchall()


def agent_in_org(conn: Connection, agent_id: str, org_id: str) -> FleetAgent | None:
    with conn.cursor(row_factory=class_row(FleetAgent)) as cur:
        return cur.execute(_FLEET + "WHERE g.agent_id = %s AND g.org_id = %s", (agent_id, org_id)).fetchone()


def devices_of_agents(conn: Connection, agent_ids: Sequence[str]) -> dict[str, list[FleetDevice]]:
    out: dict[str, list[FleetDevice]] = {a: [] for a in agent_ids}
    if not agent_ids:
        return out
    with conn.cursor(row_factory=class_row(FleetDevice)) as cur:
        for d in cur.execute(
            "SELECT device_id, agent_id, profile, manufacturer, model, firmware, battery_pct, last_seen_at "
            "FROM devices WHERE agent_id = ANY(%s) ORDER BY agent_id, device_id",
            (list(agent_ids),),
        ):
            out[d.agent_id].append(d)
    return out
