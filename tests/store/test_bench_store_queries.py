"""bench.store_queries on a small table: the figures it prints, and that its DISTINCT ON baseline
returns exactly the rows of the store's LATERAL ``latest`` query. Timings are printed, never asserted."""

from __future__ import annotations

import json

import psycopg
import pytest

from bench.store_queries import CYCLE, ORG, distinct_on_query, load_readings, main, patient_id, seed_fleet
from store.readings import latest_query
from tests.support import pg

KEYS = {
    "rows",
    "patients",
    "load_s",
    "latest_lateral_ms",
    "latest_distinct_on_ms",
    "latest_speedup",
    "latest_rows_agree",
    "chart_30d_hourly_ms",
    "chart_30d_daily_ms",
    "chart_buffers",
    "chart_heap_fetches",
    "chart_index_only",
    "table_mb",
    "index_mb",
}


def test_bench_prints_one_json_object_and_drops_its_database(capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--rows", "20000", "--patients", "40", "--repeat", "1"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert printed.keys() >= KEYS
    assert (printed["rows"], printed["patients"]) == (20000, 40)
    assert printed["latest_rows_agree"] is True
    assert printed["latest_rows"] == printed["latest_patients"] * len({m for m, *_ in CYCLE})
    assert isinstance(printed["chart_index_only"], bool)
    # 30 of 90 days of one patient's heart rate: 20000 / 40 readings, 3 in 10 of them heart rate.
    assert 40 <= printed["chart_rows_aggregated"] <= 60
    assert printed["database_kept"] is False
    with psycopg.connect(pg.admin_url()) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (printed["database"],)).fetchone() is None


@pytest.mark.parametrize("metrics", [None, ["heart_rate", "spo2", "glucose"]])
def test_lateral_and_distinct_on_return_the_same_rows(db: str, metrics: list[str] | None) -> None:
    with psycopg.connect(db) as conn:
        seed_fleet(conn, 30)
        load_readings(conn, 20000, 30)
        patients = [patient_id(p) for p in range(0, 30, 3)] + ["pat-99999"]  # the last has no readings
        query, params = latest_query(org=ORG, patients=patients, metrics=metrics)
        lateral = conn.execute(query, params).fetchall()
        query, params = distinct_on_query(org=ORG, patients=patients, metrics=metrics)
        distinct = conn.execute(query, params).fetchall()
        newest = conn.execute(
            "SELECT patient_id, metric, max(time) FROM readings WHERE patient_id = ANY(%s) GROUP BY 1, 2",
            (patients,),
        ).fetchall()
    assert lateral
    assert sorted(lateral) == sorted(distinct)
    wanted = {m for m, *_ in CYCLE} if metrics is None else set(metrics)
    assert {(p, m, t) for p, m, t, _, _ in lateral} == {(p, m, t) for p, m, t in newest if m in wanted}
