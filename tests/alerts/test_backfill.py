"""Issue 14, item 6: no missing-data alert while stored history is arriving.

The demo showed a ``missing_data`` alert that auto-resolved 30 s later. Cause: a device uploading
weeks of memory delivers it oldest first, over many messages; a scheduled round that runs while
part of it has arrived sees each metric's newest reading *so far* — weeks old — and judges the
patient silent (the rule rightly uses measured time; the history it judged was incomplete). The next
round, with the rest arrived, cleared it. Now the engine notes old readings as they are consumed
(``alert_backfills``) and the scheduled round holds missing data for that patient until the upload
has settled, bounded so a device trickling old readings cannot switch the rule off.

Real PostgreSQL, the engine in this process, a ManualClock; readings stored the way ingest stores
them, one transaction per upload message.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
import pytest

from alerts.engine import Engine
from alerts.settings import AlertsSettings
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock
from store import alerts as alert_store
from tests.alerts.conftest import add_patients, store_readings
from tests.alerts.helpers import T0
from tests.alerts.test_engine_inprocess import drain

NOW = T0 + timedelta(days=28)


def history(pid: str, days: int, end: timedelta = timedelta(0)) -> list:
    """``days`` of a twice-daily SpO2 and a morning weight, the last day ending ``end`` before NOW."""
    first = NOW - end - timedelta(days=days)
    rows = []
    for d in range(days):
        day = first + timedelta(days=d)
        rows += [(pid, day + timedelta(hours=7), "spo2", 97.0), (pid, day + timedelta(hours=19), "spo2", 96.0)]
        rows.append((pid, day + timedelta(hours=7, minutes=5), "body_weight", 80.0))
    return [r for r in rows if r[1] <= NOW]


def engine(db: str, clock: ManualClock, **rules) -> Engine:
    settings = AlertsSettings(
        database_url=db, alerts_partitions=2, alerts_rules={"anomaly": {"enabled": False}, **rules}
    )
    e = Engine(settings, clock=clock, sink=RecordingSink())
    e.connect()
    return e


def missing(conn: psycopg.Connection, pid: str) -> list:
    return [a for a in alert_store.list_alerts(conn, patient_id=pid, limit=1000) if a.kind == "missing_data"]


def upload(conn, e: Engine, clock: ManualClock, rows: list, *, per_message: int = 9, every_s: float = 5) -> list:
    """Upload ``rows`` oldest first, one ingest transaction per message, a scheduled round after
    each (as if the schedule came due mid-upload); the missing-data alerts seen after every round."""
    seen, seen_after = 0, []
    for i in range(0, len(rows), per_message):
        store_readings(conn, rows[i : i + per_message])
        seen += len(rows[i : i + per_message])
        clock.advance(every_s)
        drain(e, seen)
        e.scheduled(clock.now())
        seen_after.append(len(missing(conn, rows[0][0])))
    return seen_after


def test_weeks_of_history_arriving_in_seconds_open_no_missing_data(db: str, conn: psycopg.Connection) -> None:
    add_patients(conn, ["demo-1"])
    clock = ManualClock(NOW)
    e = engine(db, clock)
    try:
        rows = history("demo-1", 28)
        counts = upload(conn, e, clock, rows)
        assert len(counts) > 5  # really uploaded in many messages, each followed by a scheduled round
        assert set(counts) == {0}
        assert e.stats.readings_stale > 50
        assert e.stats.backfill_patients_noted > 0
        assert e.schedule.backfill_holds > 0
        clock.advance(31 * 60)  # the upload has settled: judged on the complete history
        e.scheduled(clock.now())
        assert missing(conn, "demo-1") == []
    finally:
        e.close()


def test_the_same_upload_without_the_hold_opens_the_demos_missing_data_alert(db: str, conn: psycopg.Connection) -> None:
    """The cause, shown: judged mid-upload, the patient looks silent since the last record delivered."""
    add_patients(conn, ["demo-2"])
    clock = ManualClock(NOW)
    e = engine(db, clock, missing_data={"backfill_settle_min": 0})
    try:
        counts = upload(conn, e, clock, history("demo-2", 28))
        assert max(counts) >= 1  # opened mid-upload ...
        (alert,) = missing(conn, "demo-2")
        assert (alert.state, alert.resolution) == ("resolved", "auto")  # ... and auto-resolved once it all arrived
    finally:
        e.close()


def test_a_genuinely_silent_patient_still_gets_missing_data_once_the_upload_settles(
    db: str, conn: psycopg.Connection
) -> None:
    add_patients(conn, ["quiet-1"])
    clock = ManualClock(NOW)
    e = engine(db, clock)
    try:
        counts = upload(conn, e, clock, history("quiet-1", 23, end=timedelta(days=5)))  # stopped 5 days ago
        assert set(counts) == {0}
        clock.advance(31 * 60)
        e.scheduled(clock.now())
        (alert,) = missing(conn, "quiet-1")
        assert (alert.state, alert.metric) == ("open", None)
        assert {m["metric"] for m in alert.detail["missing"]} == {"spo2", "body_weight"}
    finally:
        e.close()


def test_a_device_trickling_old_readings_cannot_hold_missing_data_off_for_ever(
    db: str, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile (or broken) device: an old reading every 20 minutes. The hold ends 6 h after the upload
    began; the engine logs it with the patient id and counts it."""
    add_patients(conn, ["trickle-1"])
    clock = ManualClock(NOW)
    e = engine(db, clock)
    old = history("trickle-1", 20, end=timedelta(days=10))
    try:
        store_readings(conn, old)
        drain(e, len(old))
        seen, minutes = len(old), 0
        caplog.set_level(logging.WARNING, logger="alerts.scheduled")
        while minutes < 7 * 60:
            e.scheduled(clock.now())
            if minutes < 6 * 60 - 20:
                assert missing(conn, "trickle-1") == [], f"opened after {minutes} min"
            clock.advance(20 * 60)
            minutes += 20
            store_readings(conn, [("trickle-1", NOW - timedelta(days=15, minutes=minutes), "spo2", 97.0)])
            seen += 1
            drain(e, seen)
        (alert,) = missing(conn, "trickle-1")
        assert alert.state == "open"
        assert e.schedule.backfill_holds_expired == 1
        assert any("trickle-1" in r.getMessage() and "still arriving" in r.getMessage() for r in caplog.records)
    finally:
        e.close()
