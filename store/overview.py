"""Read-only overview of an organisation: what ``vigil demo`` shows and reports.

Counts (readings, devices that delivered, patients, alerts opened and escalated, consult
requests), per-patient recent values for sparklines, agents' and devices' last contact, and the
alert queue with its escalation step. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

__all__ = [
    "ESCALATED_ACTIONS",
    "AgentContact",
    "DeviceReadings",
    "OrgCounts",
    "QueuedAlert",
    "agent_contacts",
    "alert_queue",
    "device_readings",
    "org_counts",
    "patients",
    "recent_values",
]

# An alert counts as escalated once an action beyond the first contact with the care team was
# carried out: the backup clinician paged or a video consultation requested.
ESCALATED_ACTIONS: Final = ("page_backup", "request_video_consult")


@dataclass(frozen=True, slots=True)
class OrgCounts:
    readings: int
    devices: int
    patients: int
    agents: int
    alerts_opened: int
    alerts_open: int
    alerts_escalated: int
    consult_requests: int


@dataclass(frozen=True, slots=True)
class DeviceReadings:
    agent_id: str
    device_id: str
    patient_id: str
    readings: int
    metrics: tuple[str, ...]
    oldest: datetime
    newest: datetime


@dataclass(frozen=True, slots=True)
class AgentContact:
    agent_id: str
    patient_id: str | None
    status: str
    last_seen_at: datetime | None
    devices_seen: int
    lowest_battery_pct: int | None


@dataclass(frozen=True, slots=True)
class QueuedAlert:
    alert_id: int
    patient_id: str
    kind: str
    metric: str | None
    severity: str
    state: str
    summary: str
    opened_at: datetime
    esc_step: int
    last_action: str | None
    consult_requested: bool


def org_counts(conn: psycopg.Connection[Any], org: str) -> OrgCounts:
    row = conn.execute(
        "SELECT "
        " (SELECT count(*) FROM readings WHERE org_id = %(org)s),"
        " (SELECT count(*) FROM (SELECT DISTINCT agent_id, device_id FROM readings WHERE org_id = %(org)s) d),"
        " (SELECT count(*) FROM patients WHERE org_id = %(org)s),"
        " (SELECT count(*) FROM agents WHERE org_id = %(org)s AND status = 'active'),"
        " (SELECT count(*) FROM alerts WHERE org_id = %(org)s),"
        " (SELECT count(*) FROM alerts WHERE org_id = %(org)s AND state <> 'resolved'),"
        " (SELECT count(DISTINCT alert_id) FROM alert_actions"
        "   WHERE org_id = %(org)s AND status = 'done' AND action = ANY(%(escalated)s)),"
        " (SELECT count(*) FROM consult_requests WHERE org_id = %(org)s)",
        {"org": org, "escalated": list(ESCALATED_ACTIONS)},
    ).fetchone()
    return OrgCounts(*(int(v) for v in row or (0,) * 8))


def patients(conn: psycopg.Connection[Any], org: str) -> list[tuple[str, str]]:
    """``(patient_id, display name)`` in id order."""
    rows = conn.execute(
        "SELECT patient_id, display_name FROM patients WHERE org_id = %s ORDER BY patient_id", (org,)
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def device_readings(conn: psycopg.Connection[Any], org: str) -> list[DeviceReadings]:
    """Per device that delivered: how many readings, of which metrics, over what time span."""
    rows = conn.execute(
        "SELECT agent_id, device_id, min(patient_id), count(*), array_agg(DISTINCT metric ORDER BY metric),"
        " min(time), max(time) FROM readings WHERE org_id = %s GROUP BY agent_id, device_id ORDER BY 1, 2",
        (org,),
    ).fetchall()
    return [DeviceReadings(r[0], r[1], r[2], int(r[3]), tuple(r[4]), r[5], r[6]) for r in rows]


def recent_values(
    conn: psycopg.Connection[Any], org: str, patient_ids: Sequence[str], metrics: Sequence[str], *, since: timedelta
) -> dict[tuple[str, str], list[float]]:
    """The values of ``metrics`` received in the last ``since``, oldest first, per (patient, metric)."""
    rows = conn.execute(
        "SELECT patient_id, metric, array_agg(value ORDER BY time) FROM readings"
        " WHERE org_id = %(org)s AND patient_id = ANY(%(patients)s) AND metric = ANY(%(metrics)s)"
        " AND time >= now() - %(since)s GROUP BY 1, 2",
        {"org": org, "patients": list(patient_ids), "metrics": list(metrics), "since": since},
    ).fetchall()
    return {(r[0], r[1]): [float(v) for v in r[2]] for r in rows}


def agent_contacts(conn: psycopg.Connection[Any], org: str) -> list[AgentContact]:
    rows = conn.execute(
        "SELECT a.agent_id, s.patient_id, a.status, a.last_seen_at,"
        " (SELECT count(*) FROM devices d WHERE d.agent_id = a.agent_id),"
        " (SELECT min(battery_pct) FROM devices d WHERE d.agent_id = a.agent_id)"
        " FROM agents a LEFT JOIN agent_assignments s"
        "   ON s.agent_id = a.agent_id AND s.valid_to IS NULL"
        " WHERE a.org_id = %s ORDER BY a.agent_id",
        (org,),
    ).fetchall()
    return [AgentContact(r[0], r[1], r[2], r[3], int(r[4]), None if r[5] is None else int(r[5])) for r in rows]


def alert_queue(conn: psycopg.Connection[Any], org: str, *, limit: int = 20) -> list[QueuedAlert]:
    """Unresolved alerts, worst first, with the last escalation action carried out."""
    rows = conn.execute(
        "SELECT a.alert_id, a.patient_id, a.kind, a.metric, a.severity, a.state, a.summary, a.opened_at,"
        " a.esc_step,"
        " (SELECT action FROM alert_actions x WHERE x.alert_id = a.alert_id AND x.status = 'done'"
        "   ORDER BY x.done_at DESC, x.action_id DESC LIMIT 1),"
        " EXISTS (SELECT 1 FROM consult_requests c WHERE c.alert_id = a.alert_id)"
        " FROM alerts a WHERE a.org_id = %(org)s AND a.state <> 'resolved'"
        " ORDER BY array_position(ARRAY['critical','high','medium','low'], a.severity), a.opened_at"
        " LIMIT %(limit)s",
        {"org": org, "limit": limit},
    ).fetchall()
    return [QueuedAlert(*r) for r in rows]
