"""A patient's week for the portal tests (on top of :func:`tests.clinician_api.world.build`).

p1 (the patient user pu1): blood pressure twice a day for 7 days, one of the 14 readings high
(so "mostly in your target range"), oxygen level every 4 hours (all in range), a home hub with a
blood pressure monitor (battery 64 %) and a pulse oximeter (battery 12 %, quiet for 3 days), and
two consent decisions (the newer one in force). p2 and q1 have readings with values p1 never has
(183/121 mmHg), a device and a consent of their own, so a leak would show.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from itertools import count

import psycopg

from store import enrolment
from store.readings import ReadingRow, insert_readings
from tests.clinician_api.world import World

__all__ = ["BP_MONITOR", "OTHER_SYSTOLIC", "OXIMETER", "furnish"]

BP_MONITOR = "A4:C1:38:00:00:01"
OXIMETER = "00:1C:05:FF:E8:74"
OTHER_SYSTOLIC = 183.0
_SEQ = count(1_000_000)


def _readings(conn: psycopg.Connection, org: str, patient: str, agent: str, rows: list[tuple]) -> None:
    insert_readings(
        conn,
        [ReadingRow(t, org, patient, agent, dev, metric, v, next(_SEQ), [], None) for t, dev, metric, v in rows],
    )


def _hub(conn: psycopg.Connection, org: str, patient: str, agent: str, seen: datetime, since: datetime) -> None:
    conn.execute(
        "INSERT INTO agents (agent_id, org_id, status, sign_public_key, kex_public_key, activated_at, agent_version, "
        "last_seen_at) VALUES (%s, %s, 'active', %s, %s, %s, '0.1.0', %s)",
        (agent, org, os.urandom(32), os.urandom(32), since, seen),
    )
    conn.execute(
        "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) VALUES (%s, %s, %s, %s)",
        (agent, org, patient, since),
    )


def _device(
    conn: psycopg.Connection,
    org: str,
    agent: str,
    device: str,
    profile: str,
    make: tuple[str, str],
    battery: int,
    seen: datetime,
) -> None:
    conn.execute(
        "INSERT INTO devices (device_id, org_id, agent_id, profile, manufacturer, model, battery_pct, last_seen_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (device, org, agent, profile, make[0], make[1], battery, seen),
    )


def furnish(w: World, now: datetime) -> None:
    week = now - timedelta(days=7)
    with psycopg.connect(w.url, autocommit=True) as conn, conn.transaction():
        _hub(conn, "o1", "p1", "hub-p1", now - timedelta(minutes=5), week - timedelta(days=30))
        _device(conn, "o1", "hub-p1", BP_MONITOR, "blood_pressure", ("Omron", "BP7000"), 64, now - timedelta(hours=3))
        _device(conn, "o1", "hub-p1", OXIMETER, "pulse_oximeter", ("Nonin", "3230"), 12, now - timedelta(days=3))
        rows: list[tuple] = []
        for k in range(14):  # twice a day, every 12 hours from 6 days 20 hours ago
            t = now - timedelta(days=6, hours=20) + timedelta(hours=12 * k)
            rows.append((t, BP_MONITOR, "bp_systolic", 142.0 if k == 7 else 118.0 + k // 2))
            rows.append((t, BP_MONITOR, "bp_diastolic", 76.0))
            rows.append((t, BP_MONITOR, "heart_rate", 70.0 + k // 2))
        for i in range(18):  # the oximeter: 3 days of readings every 4 hours, then silence
            t = now - timedelta(days=6) + timedelta(hours=4 * i)
            rows.append((t, OXIMETER, "spo2", 96.0 + (i % 2)))
        _readings(conn, "o1", "p1", "hub-p1", rows)
        for pid, org in (("p2", "o1"), ("q1", "o2")):
            agent = f"hub-{pid}"
            _hub(conn, org, pid, agent, now, week)
            _device(conn, org, agent, f"B0:00:00:00:00:{pid[-1]}0", "weight_scale", ("Other", "Scale"), 99, now)
            t = now - timedelta(hours=2)
            _readings(
                conn,
                org,
                pid,
                agent,
                [(t, f"B0:00:00:00:00:{pid[-1]}0", "bp_systolic", OTHER_SYSTOLIC), (t, "x", "bp_diastolic", 121.0)],
            )
        clinician = w["c1"].user_id
        enrolment.add_consent(
            conn,
            org_id="o1",
            patient_id="p1",
            decision="granted",
            version="rpm-v2",
            decided_on=date(2025, 6, 2),
            method="written",
            by=clinician,
            now=now - timedelta(days=200),
        )
        enrolment.add_consent(
            conn,
            org_id="o1",
            patient_id="p1",
            decision="granted",
            version="rpm-v3",
            decided_on=date(2026, 2, 3),
            method="electronic",
            by=clinician,
            now=now - timedelta(days=26),
        )
        enrolment.add_consent(
            conn,
            org_id="o1",
            patient_id="p2",
            decision="withdrawn",
            version="other-v9",
            decided_on=date(2026, 1, 1),
            method="verbal",
            by=clinician,
            now=now - timedelta(days=50),
        )
