"""Engine throughput: the alert engine consuming a stored cohort from PostgreSQL by watermark.

The cohort's readings are stored first (through ``store.readings.insert_readings``, in ingest-sized
transactions) into a fresh, migrated database; then one engine worker (the ``vigil alerts run``
code, in this process) consumes the backlog page by page — evaluate, write alerts, move the
watermark, one transaction per page — and the wall time of that consumption is measured. With
anomaly models, models are first trained as of day 45 (the engine only uses a model for readings
taken after it was trained), so about half of the readings are also judged by a model.

The server is ``VIGIL_BENCH_DATABASE_URL`` (default: the local server over its Unix socket); the
bench database is dropped afterwards.

Run alone (``python -m bench.alerts_engine``) it prints one JSON object per configuration
(``thresholds_only``, ``with_anomaly``): ``readings_per_s`` (wall time, as ``bench.alerts_eval``
reports it) and ``cpu_us_per_reading``, the engine process's own CPU (user + system) per reading
consumed, the more meaningful figure on a shared machine, since the database server's share runs in
other processes; ``db_wait_share`` is the part of the wall time the engine was not on the CPU
(waiting for PostgreSQL or for a core). ``--profile FILE`` writes a cProfile of the with-anomaly
consumption (``python -m pstats FILE``) and ``--top N`` prints its N heaviest functions to stderr.
``--batch-limit`` sets the engine's page size (``alerts_batch_limit``, 2000 as in ``vigil alerts run``):
every page loads each of its patients' rule lookback from the database again, so the page size shows
how much of the cost is that reload.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import secrets
import sys
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
from store import bench_support
from store import patients as patient_store
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


def engine_throughput(
    cohort: Cohort, *, anomaly: bool, profile: cProfile.Profile | None = None, batch_limit: int = 2000
) -> dict[str, float]:
    """Readings per second the engine evaluates while consuming the whole cohort."""
    with bench_database() as url:
        migrate(url, flavor="postgres")
        _load(url, cohort)
        rules = RulesConfig(anomaly={"enabled": anomaly})
        settings = AlertsSettings(
            database_url=url,
            alerts_partitions=16,
            alerts_batch_limit=batch_limit,
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
                patients = patient_store.patients(conn)
                configs = {p.patient_id: engine.patient_config(p.patient_id, p.settings) for p in patients}
                trained = engine.models.retrain_due(conn, patients, configs, clock.now(), limit=len(patients))
            clock.set(cohort.start + timedelta(days=cohort.days, hours=1))
            start, cpu0 = time.perf_counter(), time.process_time()
            if profile is not None:
                profile.enable()
            while engine.stats.readings_seen < len(cohort.readings):
                if engine.consume() == 0:
                    time.sleep(0.05)  # the feed horizon waits for a writer elsewhere on the server
            if profile is not None:
                profile.disable()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        finally:
            engine.close()
    return {
        "readings_per_s": round(len(cohort.readings) / elapsed),
        "engine_alerts_opened": engine.stats.alerts_opened,
        "engine_models_trained": trained,
        "engine_cpu_us_per_reading": round(cpu / len(cohort.readings) * 1e6, 1),
        "engine_db_wait_share": round(max(0.0, 1 - cpu / elapsed), 3),
    }


def main() -> None:
    from bench.cohort import generate

    ap = argparse.ArgumentParser(description="alert engine throughput on the synthetic cohort")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quiet", type=int, default=40)
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--batch-limit", type=int, default=2000, help="feed readings per engine page (alerts_batch_limit)")
    ap.add_argument("--profile", default=None, help="write a cProfile of the with-anomaly run here")
    ap.add_argument("--top", type=int, default=0, help="print the N heaviest functions (cumulative) to stderr")
    args = ap.parse_args()
    cohort = generate(args.seed, quiet=args.quiet, per_kind=args.per_kind, days=args.days)
    out: dict[str, object] = {"seed": args.seed, "batch_limit": args.batch_limit}
    out |= {"patients": len(cohort.patients), "readings": len(cohort.readings)}
    for name, anomaly in (("thresholds_only", False), ("with_anomaly", True)):
        prof = cProfile.Profile() if anomaly and (args.profile or args.top) else None
        r = engine_throughput(cohort, anomaly=anomaly, profile=prof, batch_limit=args.batch_limit)
        out[name] = {
            "readings_per_s": r["readings_per_s"],
            "cpu_us_per_reading": r["engine_cpu_us_per_reading"],
            "db_wait_share": r["engine_db_wait_share"],
            "alerts_opened": r["engine_alerts_opened"],
            "models_trained": r["engine_models_trained"],
        }
        if prof is not None:
            if args.profile:
                prof.dump_stats(args.profile)
            if args.top:
                pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(args.top)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
