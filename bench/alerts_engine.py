"""Engine throughput: the alert engine consuming a stored cohort from PostgreSQL by watermark.

The cohort's readings are stored first (through ``store.readings.insert_readings``, in ingest-sized
transactions) into a fresh, migrated database; then one engine worker (the ``vigil alerts run``
code, in this process) consumes the backlog page by page — evaluate, write alerts, move the
watermark, one transaction per page — and the wall time of that consumption is measured. With
anomaly models, models are first trained as of day 45 (the engine only uses a model for readings
taken after it was trained), so about half of the readings are also judged by a model.

The server is ``VIGIL_BENCH_DATABASE_URL`` (default: the local server over its Unix socket); the
bench database is dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from alerts.config import RulesConfig
from alerts.engine import Engine
from alerts.settings import AlertsSettings
from bench.cohort import Cohort
from consult.sinks import RecordingSink
from rpm_core.clock import ManualClock
from store import alert_engine as engine_store
from store import bench_support
from store.admin import create_database, database_url, drop_database
from store.connection import connect
from store.migrate import migrate
from store.readings import ReadingRow, insert_readings

ADMIN_URL = os.environ.get("VIGIL_BENCH_DATABASE_URL", "postgresql:///postgres?host=/var/run/postgresql")


@contextmanager
def bench_database() -> Iterator[str]:
    name = f"vigil_bench_{secrets.token_hex(4)}"
    create_database(ADMIN_URL, name)
    try:
        yield database_url(ADMIN_URL, name)
    finally:
        drop_database(ADMIN_URL, name)


def _load(url: str, cohort: Cohort) -> None:
    with connect(url, application_name="vigil-bench") as conn:
        with conn.transaction():
            bench_support.insert_org(conn, "bench", "Bench clinic")
            bench_support.insert_patients(conn, "bench", [(p.patient_id, "x", p.settings) for p in cohort.patients])
        rows = [
            ReadingRow(t, "bench", pid, "bench-agent", "dev", metric, value, seq, [], None)
            for seq, (pid, t, metric, value) in enumerate(cohort.readings)
        ]
        for i in range(0, len(rows), 1000):
            with conn.transaction():
                insert_readings(conn, rows[i : i + 1000])


def engine_throughput(cohort: Cohort, *, anomaly: bool) -> dict[str, float]:
    """Readings per second the engine evaluates while consuming the whole cohort."""
    with bench_database() as url:
        migrate(url, flavor="postgres")
        _load(url, cohort)
        rules = RulesConfig(anomaly={"enabled": anomaly})
        settings = AlertsSettings(
            database_url=url,
            alerts_partitions=16,
            alerts_batch_limit=2000,
            alerts_stale_after_h=24.0 * (cohort.days + 30),
            alerts_rules=rules,
        )
        clock = ManualClock(cohort.start + timedelta(days=45))
        engine = Engine(settings, clock=clock, sink=RecordingSink())
        conn = engine.connect()
        try:
            engine.rebalance()
            trained = 0
            if anomaly:
                patients = engine_store.patients(conn)
                configs = {p.patient_id: engine.patient_config(p.patient_id, p.settings) for p in patients}
                trained = engine.models.retrain_due(conn, patients, configs, clock.now(), limit=len(patients))
            clock.set(cohort.start + timedelta(days=cohort.days, hours=1))
            start = time.perf_counter()
            while engine.stats.readings_seen < len(cohort.readings):
                if engine.consume() == 0:
                    time.sleep(0.05)  # the feed horizon waits for a writer elsewhere on the server
            elapsed = time.perf_counter() - start
        finally:
            engine.close()
    return {
        "readings_per_s": round(len(cohort.readings) / elapsed),
        "engine_alerts_opened": engine.stats.alerts_opened,
        "engine_models_trained": trained,
    }
