"""The engine's history cache is invisible: readings arriving out of order, some days late (below
what the cache covers), consumed in small pages, give exactly the alerts and events the same engine
gives when it loads every history from the database for every page."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import psycopg

from alerts.engine import Engine
from alerts.settings import AlertsSettings
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock
from tests.alerts.conftest import add_patients, store_readings
from tests.alerts.helpers import T0

PATIENTS = [f"c{i}" for i in range(6)]
DAYS = 24


def cohort(rng: random.Random) -> list[tuple[str, object, str, float]]:
    rows = []
    for n, pid in enumerate(PATIENTS):
        weight = 80.0 + n
        for day in range(DAYS):
            for hour in (8, 20):
                t = T0 + timedelta(days=day, hours=hour, minutes=rng.randrange(60))
                sick = day > 10 and n % 2 == 0  # half the patients deteriorate
                rows.append((pid, t, "spo2", float(rng.choice([97, 96, 95] + ([92, 90] if sick else [])))))
                rows.append((pid, t, "heart_rate", float(rng.randrange(60, 135 if sick else 95))))
                rows.append((pid, t, "bp_systolic", float(rng.randrange(118, 150))))
                rows.append((pid, t, "bp_diastolic", float(rng.randrange(70, 92))))
                if hour == 8:
                    weight += rng.choice([-0.3, 0.0, 0.2] + ([0.9] if sick else []))
                    rows.append((pid, t, "body_weight", round(weight, 1)))
    return sorted(rows, key=lambda r: r[1])


def arrival(rng: random.Random, rows: list) -> list[list]:
    """Ingest transactions in arrival order: most readings on time, some an hour or two late, a
    few days late (a device uploading what it held)."""
    arrivals = []
    for i, r in enumerate(rows):
        roll = rng.random()
        delay = 0 if roll < 0.85 else rng.randrange(1, 12) if roll < 0.97 else rng.randrange(150, 400)
        arrivals.append((i + delay, i, r))
    ordered = [r for *_, r in sorted(arrivals)]
    batches, i = [], 0
    while i < len(ordered):
        n = rng.randrange(1, 9)
        batches.append(ordered[i : i + n])
        i += n
    return batches


def outcome(conn: psycopg.Connection) -> list[tuple]:
    alerts = conn.execute(
        "SELECT alert_id, patient_id, rule, severity, state, opened_at, summary, evidence, cleared_since, "
        "resolution, unconfirmed FROM alerts ORDER BY patient_id, rule, alert_id"
    ).fetchall()
    events = conn.execute(
        "SELECT alert_id, type, at, data FROM alert_events WHERE type <> 'escalation' ORDER BY event_id"
    ).fetchall()
    per_alert: dict[int, list] = {}
    for alert_id, *rest in events:
        per_alert.setdefault(alert_id, []).append(tuple(rest))
    return [(*a[1:], per_alert.get(a[0], [])) for a in alerts]


def consume_all(e: Engine, expected: int, *, reload_every_page: bool) -> None:
    deadline = time.monotonic() + 60
    while e.stats.readings_seen < expected:
        assert time.monotonic() < deadline, f"engine saw {e.stats.readings_seen} of {expected} readings"
        if reload_every_page:
            e.histories.clear()
        _, more = e.consume_page()
        if not more:
            time.sleep(0.01)  # the feed horizon waits for a writer elsewhere on the server


def test_the_history_cache_changes_no_decision(db: str, conn: psycopg.Connection) -> None:
    rng = random.Random(15)
    add_patients(conn, PATIENTS)
    batches = arrival(rng, cohort(rng))
    for rows in batches:
        store_readings(conn, rows)
    total = sum(len(b) for b in batches)
    settings = AlertsSettings(
        database_url=db, alerts_partitions=4, alerts_batch_limit=40, alerts_stale_after_h=24.0 * (DAYS + 30)
    )
    clock = ManualClock(T0 + timedelta(days=DAYS + 1))
    results, loads = [], []
    for reload_every_page in (False, True):
        e = Engine(settings, clock=clock, sink=RecordingSink())
        e.connect()
        try:
            e.rebalance()
            consume_all(e, total, reload_every_page=reload_every_page)
        finally:
            e.close()
        assert e.stats.readings_seen == total
        results.append(outcome(conn))
        loads.append(e.stats.histories_loaded)
        with conn.transaction():
            for table in ("alert_actions", "alert_events", "alerts", "alert_watermarks", "alert_backfills"):
                conn.execute(f"DELETE FROM {table}")
    cached, reloaded = results
    assert len(cached) > 10
    assert cached == reloaded
    # Loaded once per patient, and again for some readings arriving days late; not every page.
    assert len(PATIENTS) < loads[0] < loads[1] / 3
