"""The engine in this process against PostgreSQL: watermark, lifecycle rows, scheduled rounds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from alerts.config import RulesConfig
from alerts.engine import Engine
from alerts.settings import AlertsSettings
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock, SystemClock
from store import alerts as alert_store
from tests.alerts.conftest import add_patients, store_readings
from tests.alerts.helpers import T0


def drain(e: Engine, expected: int, timeout: float = 30.0) -> None:
    """Run rounds until the engine has taken ``expected`` readings off the feed.

    The feed's horizon (``vigil_horizon()``) is this database's oldest running transaction, and
    counts for a moment a transaction elsewhere that it cannot place: readings may be held back
    briefly, never skipped.
    """
    deadline = time.monotonic() + timeout
    while e.stats.readings_seen < expected:
        assert time.monotonic() < deadline, f"engine saw {e.stats.readings_seen} of {expected} readings"
        e.run_once()
        time.sleep(0.01)


def engine(db: str, clock: ManualClock, **kw) -> Engine:
    settings = AlertsSettings(database_url=db, alerts_partitions=4, alerts_batch_limit=50, **kw)
    e = Engine(settings, clock=clock, sink=RecordingSink())
    e.connect()
    return e


def test_readings_in_alert_out_once(db: str, conn: psycopg.Connection) -> None:
    add_patients(conn, ["p1", "p2"])
    clock = ManualClock(T0)
    e = engine(db, clock)
    store_readings(conn, [("p1", T0, "spo2", 90.0), ("p2", T0, "spo2", 97.0)])
    store_readings(conn, [("p1", T0 + timedelta(minutes=5), "spo2", 89.0)])
    clock.set(T0 + timedelta(minutes=10))
    drain(e, 3)
    rows = alert_store.list_alerts(conn, org_id="o1")
    assert [(r.patient_id, r.rule, r.severity, r.state) for r in rows] == [("p1", "threshold:spo2:low", "high", "open")]
    assert e.stats.readings_evaluated == 3
    e.run_once()  # nothing new: nothing changes
    assert len(alert_store.list_alerts(conn, org_id="o1")) == 1
    events = [ev.type for ev in alert_store.alert_events(conn, rows[0].alert_id)]
    # The first reading opened it unconfirmed (asking for a repeat), the second confirmed it and
    # started the high walk (issue 14); before that it was opened on the second.
    assert events[0] == "opened"
    assert events[events.index("confirmed") + 1 :] == ["escalation", "escalation"]
    e.close()


def test_stale_readings_are_history_not_triggers(db: str, conn: psycopg.Connection) -> None:
    add_patients(conn, ["p1"])
    clock = ManualClock(T0 + timedelta(days=3))
    e = engine(db, clock)
    store_readings(conn, [("p1", T0, "glucose", 40.0)])
    drain(e, 1)
    assert alert_store.list_alerts(conn, org_id="o1") == []
    assert e.stats.readings_stale == 1
    e.close()


def test_missing_data_opens_on_schedule_and_auto_resolves_when_readings_resume(
    db: str, conn: psycopg.Connection
) -> None:
    add_patients(conn, ["p1"])
    days = [("p1", T0 + timedelta(days=d), "body_weight", 80.0) for d in range(15)]
    store_readings(conn, days)
    clock = ManualClock(T0 + timedelta(days=14, hours=1))
    e = engine(db, clock, alerts_rules=RulesConfig(anomaly={"enabled": False}))
    drain(e, 15)
    assert alert_store.list_alerts(conn, org_id="o1") == []
    clock.set(T0 + timedelta(days=18, hours=2))
    e.scheduled(clock.now())
    (row,) = alert_store.list_alerts(conn, org_id="o1")
    assert (row.kind, row.metric, row.state) == ("missing_data", "body_weight", "open")
    store_readings(conn, [("p1", clock.now(), "body_weight", 80.0)])
    drain(e, 16)
    e.scheduled(clock.now())
    (row,) = alert_store.list_alerts(conn, org_id="o1")
    assert (row.state, row.resolution) == ("resolved", "auto")
    e.close()


def test_a_notify_wakes_the_engine_long_before_its_poll(db: str, conn: psycopg.Connection) -> None:
    add_patients(conn, ["p1"])
    stop = threading.Event()
    settings = AlertsSettings(database_url=db, alerts_partitions=2, alerts_poll_interval_s=600)
    e = Engine(settings, clock=SystemClock(), sink=RecordingSink(), stop=stop)
    worker = threading.Thread(target=e.run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while e.stats.scheduled_rounds == 0:  # first round done: it now sleeps on LISTEN
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        store_readings(conn, [("p1", datetime.now(UTC), "glucose", 45.0)])
        conn.execute("NOTIFY vigil_readings, '0'")  # what ingest does after each commit
        deadline = time.monotonic() + 15
        while not alert_store.list_alerts(conn, org_id="o1"):
            assert time.monotonic() < deadline, f"the NOTIFY did not wake the engine: {e.stats}"
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
