"""Devices: the medical devices behind each edge agent, as the agents report them (written by
ingest, in the transaction of the readings; read back with the patient assigned now for the FHIR
export), and a patient's equipment as the alert engine and the API see it (the agents assigned to
the patient and their devices, with last contact and battery).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from store.connection import Connection

__all__ = [
    "DeviceFacts",
    "DeviceRow",
    "EquipmentRow",
    "device_facts",
    "devices_of",
    "patient_devices",
    "upsert_devices",
]


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device as its agent reported it (None: not reported this time, the stored value stays)."""

    device_id: str
    org_id: str
    agent_id: str
    profile: str | None
    name: str | None
    manufacturer: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    battery_pct: int | None
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceFacts(DeviceRow):
    """A stored device with the patient its agent is assigned to now (None: unassigned); the FHIR export's."""

    patient_id: str | None


@dataclass(frozen=True, slots=True)
class EquipmentRow:
    """An edge agent or a device assigned to a patient now: when it last reported, its battery."""

    patient_id: str
    kind: str  # 'device' | 'agent'
    id: str
    last_seen: datetime | None
    battery_pct: int | None


def upsert_devices(conn: Connection, rows: Sequence[DeviceRow]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO devices (device_id, org_id, agent_id, profile, name, manufacturer, model, serial, firmware, "
            "battery_pct, last_seen_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (device_id) DO UPDATE SET agent_id = excluded.agent_id, org_id = excluded.org_id, "
            "profile = coalesce(excluded.profile, devices.profile), name = coalesce(excluded.name, devices.name), "
            "manufacturer = coalesce(excluded.manufacturer, devices.manufacturer), "
            "model = coalesce(excluded.model, devices.model), serial = coalesce(excluded.serial, devices.serial), "
            "firmware = coalesce(excluded.firmware, devices.firmware), "
            "battery_pct = coalesce(excluded.battery_pct, devices.battery_pct), "
            "last_seen_at = greatest(devices.last_seen_at, excluded.last_seen_at)",
            [
                (
                    d.device_id,
                    d.org_id,
                    d.agent_id,
                    d.profile,
                    d.name,
                    d.manufacturer,
                    d.model,
                    d.serial,
                    d.firmware,
                    d.battery_pct,
                    d.last_seen_at,
                )
                for d in rows
            ],
        )


def devices_of(conn: Connection, patient_ids: Sequence[str]) -> list[EquipmentRow]:
    """The edge agents currently assigned to the patients, and those agents' devices."""
    rows = conn.execute(
        "SELECT a.patient_id, 'agent', g.agent_id, g.last_seen_at, NULL::smallint "
        "FROM agent_assignments a JOIN agents g ON g.agent_id = a.agent_id "
        "WHERE a.valid_to IS NULL AND a.patient_id = ANY(%s) AND g.status = 'active' "
        "UNION ALL "
        "SELECT a.patient_id, 'device', d.device_id, d.last_seen_at, d.battery_pct "
        "FROM agent_assignments a JOIN devices d ON d.agent_id = a.agent_id "
        "WHERE a.valid_to IS NULL AND a.patient_id = ANY(%s) ORDER BY 1, 2, 3",
        (list(patient_ids), list(patient_ids)),
    ).fetchall()
    return [EquipmentRow(r[0], r[1], r[2], r[3], None if r[4] is None else int(r[4])) for r in rows]


_DEVICE = (
    "SELECT d.device_id, d.org_id, d.agent_id, a.patient_id, d.profile, d.name, d.manufacturer, d.model, d.serial, "
    "d.firmware, d.battery_pct, d.last_seen_at FROM devices d "
    "LEFT JOIN agent_assignments a ON a.agent_id = d.agent_id AND a.valid_to IS NULL "
)


def device_facts(conn: Connection, device_id: str) -> DeviceFacts | None:
    with conn.cursor(row_factory=class_row(DeviceFacts)) as cur:
        return cur.execute(_DEVICE + "WHERE d.device_id = %s", (device_id,)).fetchone()


def patient_devices(conn: Connection, org_id: str, patient_id: str) -> list[DeviceFacts]:
    """The devices of the agents assigned to the patient now."""
    with conn.cursor(row_factory=class_row(DeviceFacts)) as cur:
        return cur.execute(
            _DEVICE + "WHERE d.org_id = %s AND a.patient_id = %s ORDER BY d.device_id", (org_id, patient_id)
        ).fetchall()
