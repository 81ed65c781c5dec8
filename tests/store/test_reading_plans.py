"""The chart query is answered from the covering index alone; "latest value" probes it.

Arrival order interleaves patients, so any heap visit costs about one page per reading on a
30-day chart (bench/store_queries.py measures it on 10M rows). This checks the property that
prevents it: with sequential and bitmap scans off, both queries plan as an Index Only Scan on
readings_patient_metric_time, i.e. the index holds every column they read or filter on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from store.readings import ReadingRow, insert_readings, latest_query, series_query

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def conn(db: str):
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        c.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p1', 'o1', 'A'), ('p2', 'o1', 'B')")
        rows = [
            ReadingRow(T0 + timedelta(minutes=n), "o1", f"p{1 + n % 2}", "a1", "d1", m, 70.0 + n % 7, n, [], None)
            for n in range(1, 400)
            for m in ("heart_rate", "spo2")
        ]
        with c.transaction():
            insert_readings(c, rows)
        c.execute("VACUUM (ANALYZE) readings")  # sets the visibility map, as autovacuum would
        yield c


def _scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    found = [(plan["Node Type"], plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return [f for f in found if "Scan" in f[0]]


def _plan(conn: psycopg.Connection[Any], query: sql.Composable, params: dict[str, Any]) -> list[tuple[str, str | None]]:
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_bitmapscan = off")
    explain = sql.SQL("EXPLAIN (FORMAT JSON) ") + query
    row = conn.execute(explain, params).fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return _scans(doc[0]["Plan"])


def test_chart_query_is_index_only(conn: psycopg.Connection[Any]) -> None:
    query, params = series_query(
        "postgres", org="o1", patient="p1", metric="heart_rate", start=T0, end=T0 + timedelta(days=30),
        bucket=timedelta(hours=1),
    )  # fmt: skip
    scans = [s for s in _plan(conn, query, params) if s[1] == "readings_patient_metric_time"]
    assert scans == [("Index Only Scan", "readings_patient_metric_time")]


def test_latest_query_probes_the_index_once_per_patient_and_metric(conn: psycopg.Connection[Any]) -> None:
    # It also returns the device id, which the index does not hold: one heap visit per
    # (patient, metric) answered, never one per reading.
    query, params = latest_query(org="o1", patients=["p1", "p2"], metrics=["heart_rate", "spo2"])
    scans = [s for s in _plan(conn, query, params) if s[1] == "readings_patient_metric_time"]
    assert scans in (
        [("Index Scan", "readings_patient_metric_time")],
        [("Index Only Scan", "readings_patient_metric_time")],
    )
