from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from store.feed import readings_since
from store.readings import Bucket, ReadingRow, insert_readings, latest, readings_since_time, series

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def conn(db: str):
    with psycopg.connect(db) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic'), ('o2', 'Other')")
        c.execute(
            "INSERT INTO patients (patient_id, org_id, display_name) VALUES "
            "('p1', 'o1', 'A'), ('p2', 'o1', 'B'), ('p3', 'o2', 'C')"
        )
        c.commit()
        yield c


def row(
    seq: int,
    *,
    t: datetime = T0,
    patient: str = "p1",
    metric: str = "heart_rate",
    value: float = 70.0,
    agent: str = "a1",
    org: str = "o1",
) -> ReadingRow:
    return ReadingRow(t, org, patient, agent, "dev1", metric, value, seq, ["contact"], None)


def count(c: psycopg.Connection) -> int:
    return c.execute("SELECT count(*) FROM readings").fetchone()[0]  # type: ignore[index]


def test_inserting_the_same_reading_twice_leaves_one_row(conn: psycopg.Connection) -> None:
    assert insert_readings(conn, [row(1)]) == 1
    conn.commit()
    assert insert_readings(conn, [row(1)]) == 0
    conn.commit()
    assert count(conn) == 1


def test_duplicates_inside_one_batch_are_absorbed(conn: psycopg.Connection) -> None:
    assert insert_readings(conn, [row(1), row(2), row(1), row(2)]) == 2
    conn.commit()
    assert count(conn) == 2


def test_same_sequence_at_another_time_is_another_reading(conn: psycopg.Connection) -> None:
    # The dedup key is (agent, sequence, measured time).
    assert insert_readings(conn, [row(1), row(1, t=T0 + timedelta(seconds=1)), row(1, agent="a2")]) == 3


def test_rolled_back_batch_leaves_nothing(conn: psycopg.Connection) -> None:
    insert_readings(conn, [row(i) for i in range(10)])
    conn.rollback()
    assert count(conn) == 0


def test_series_buckets_min_max_avg_count(conn: psycopg.Connection) -> None:
    rows = [row(i, t=T0 + timedelta(minutes=10 * i), value=60.0 + i) for i in range(12)]  # two hours
    rows.append(row(100, t=T0, patient="p2", value=150.0))  # another patient: not in p1's chart
    insert_readings(conn, rows)
    conn.commit()
    got = series(
        conn,
        "postgres",
        org="o1",
        patient="p1",
        metric="heart_rate",
        start=T0,
        end=T0 + timedelta(hours=3),
        bucket=timedelta(hours=1),
    )
    assert got == [
        Bucket(T0, 60.0, 65.0, 62.5, 6),
        Bucket(T0 + timedelta(hours=1), 66.0, 71.0, 68.5, 6),
    ]
    # Another organisation sees nothing of this patient.
    assert (
        series(
            conn,
            "postgres",
            org="o2",
            patient="p1",
            metric="heart_rate",
            start=T0,
            end=T0 + timedelta(hours=3),
            bucket=timedelta(hours=1),
        )
        == []
    )


def test_series_range_is_half_open(conn: psycopg.Connection) -> None:
    insert_readings(conn, [row(1, t=T0), row(2, t=T0 + timedelta(hours=1))])
    conn.commit()
    got = series(
        conn,
        "postgres",
        org="o1",
        patient="p1",
        metric="heart_rate",
        start=T0,
        end=T0 + timedelta(hours=1),
        bucket=timedelta(minutes=15),
    )
    assert [(b.start, b.count) for b in got] == [(T0, 1)]


def test_latest_value_of_every_metric_per_patient(conn: psycopg.Connection) -> None:
    insert_readings(
        conn,
        [
            row(1, t=T0, value=70.0),
            row(2, t=T0 + timedelta(minutes=5), value=75.0),
            row(3, t=T0 + timedelta(minutes=1), metric="spo2", value=96.0),
            row(4, t=T0 + timedelta(minutes=9), patient="p2", value=88.0),
            row(5, t=T0 + timedelta(minutes=9), patient="p3", org="o2", value=99.0),
        ],
    )
    conn.commit()
    got = {(v.patient_id, v.metric): (v.time, v.value) for v in latest(conn, org="o1", patients=["p1", "p2", "p3"])}
    assert got == {
        ("p1", "heart_rate"): (T0 + timedelta(minutes=5), 75.0),
        ("p1", "spo2"): (T0 + timedelta(minutes=1), 96.0),
        ("p2", "heart_rate"): (T0 + timedelta(minutes=9), 88.0),
    }


def test_unknown_metric_is_refused_before_sql(conn: psycopg.Connection) -> None:
    with pytest.raises(ValueError):
        series(
            conn,
            "postgres",
            org="o1",
            patient="p1",
            metric="x'; drop table readings; --",
            start=T0,
            end=T0 + timedelta(hours=1),
            bucket=timedelta(hours=1),
        )


def settled(reader: psycopg.Connection) -> None:
    """Wait (bounded) until every stored reading's transaction is below the database's horizon.

    A transaction of another database that ends while the horizon is computed counts for a moment
    (migration 0030); this is the positive signal that the horizon passed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = reader.execute("SELECT vigil_horizon() > coalesce(max(ingest_xid), '0'::xid8) FROM readings").fetchone()
        if row is not None and row[0]:
            return
        time.sleep(0.05)
    pytest.fail("the database's transaction horizon did not pass the stored readings within 30 s")


def test_watermark_feed_never_skips_a_row_committed_late(db: str, conn: psycopg.Connection) -> None:
    start = readings_since(conn, 0).watermark
    conn.commit()
    with psycopg.connect(db) as slow, psycopg.connect(db) as fast, psycopg.connect(db, autocommit=True) as reader:
        insert_readings(slow, [row(1)])  # begins first: lower transaction id, commits last
        insert_readings(fast, [row(2)])
        fast.commit()
        page = readings_since(reader, start)
        assert page.readings == []  # the slow writer holds the horizon back
        slow.commit()
        settled(reader)
        page = readings_since(reader, start)
        assert sorted(r.seq for r in page.readings) == [1, 2]
        assert readings_since(reader, page.watermark).readings == []


def test_watermark_pages_never_split_a_transaction(db: str, conn: psycopg.Connection) -> None:
    w = readings_since(conn, 0).watermark
    for batch in range(3):
        insert_readings(conn, [row(batch * 10 + i) for i in range(4)])
        conn.commit()
    pages: list[list[int]] = []
    with psycopg.connect(db, autocommit=True) as reader:
        settled(reader)
        for _ in range(10):
            page = readings_since(reader, w, limit=3)
            if not page.readings:
                break
            pages.append(sorted(r.seq for r in page.readings))
            w = page.watermark
    # Each transaction stored four rows; a page of at most 3 still carries a transaction whole.
    assert pages == [[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]]


def last_xid(c: psycopg.Connection) -> int:
    return int(c.execute("SELECT max(ingest_xid::text::bigint) FROM readings").fetchone()[0])  # type: ignore[index]


def test_readings_since_time_stop_at_the_watermark_and_keep_to_the_patients_org(conn: psycopg.Connection) -> None:
    insert_readings(conn, [row(1, t=T0), row(2, t=T0 + timedelta(hours=1)), row(3, t=T0, patient="p2")])
    insert_readings(conn, [row(9, t=T0 - timedelta(days=1))])  # before the start: not asked for
    conn.commit()
    first = last_xid(conn) + 1  # a watermark just past the first transaction
    insert_readings(conn, [row(4, t=T0 - timedelta(minutes=5), value=71.0)])  # a later transaction
    conn.commit()
    starts = [("o1", "p1", T0 - timedelta(hours=1)), ("o2", "p2", T0 - timedelta(hours=1))]
    got = readings_since_time(conn, starts, ["heart_rate", "spo2"], below_xid=first)
    assert sorted((r.patient_id, r.time, r.value) for r in got) == [
        ("p1", T0, 70.0),
        ("p1", T0 + timedelta(hours=1), 70.0),
    ]  # p2 belongs to o1, not o2; the reading of the later transaction is beyond the watermark
    got = readings_since_time(conn, starts[:1], ["heart_rate"], below_xid=last_xid(conn) + 1)
    assert sorted(r.time for r in got) == [T0 - timedelta(minutes=5), T0, T0 + timedelta(hours=1)]
    assert readings_since_time(conn, [], ["heart_rate"], below_xid=first) == []
