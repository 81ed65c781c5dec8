"""The panel's latest values follow the readings watermark: every committed reading counted once,
none skipped when a slow writer commits late, the newest value never replaced by history, an
incremental result equal to a rebuild from scratch, and reads exact before the watermark moves."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from store import summaries
from store.readings import ReadingRow, insert_readings

T0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)


@pytest.fixture
def url(db: str) -> str:
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic'), ('o2', 'Other')")
        c.execute(
            "INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p1', 'o1', 'A'), ('p2', 'o1', 'B'), "
            "('q1', 'o2', 'C')"
        )
    return db


def reading(seq: int, t: datetime, value: float, *, patient: str = "p1", metric: str = "heart_rate",
            org: str = "o1", agent: str = "a1", device: str = "d1") -> ReadingRow:  # fmt: skip
    return ReadingRow(t, org, patient, agent, device, metric, value, seq, [], None)


def store(url: str, rows: list[ReadingRow]) -> int:
    with psycopg.connect(url) as c:
        n = insert_readings(c, rows)
        c.commit()
    return n


def advance(url: str, *, settle: bool = True) -> int | None:
    """summaries.advance, once every stored reading's transaction is below the database's horizon
    (a transaction of another database that ends while the horizon is computed counts for a moment)."""
    with psycopg.connect(url, autocommit=True) as c:
        deadline = time.monotonic() + 30
        while settle and time.monotonic() < deadline:
            row = c.execute("SELECT vigil_horizon() > coalesce(max(ingest_xid), '0'::xid8) FROM readings").fetchone()
            if row is not None and row[0]:
                break
            time.sleep(0.05)
        return summaries.advance(c)


def latest(url: str) -> dict[tuple[str, str, str], tuple[datetime, float, str]]:
    """The table itself (what advance has counted)."""
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT org_id, patient_id, metric, time, value, device_id FROM latest_readings").fetchall()
    return {(r[0], r[1], r[2]): (r[3], float(r[4]), r[5]) for r in rows}


def test_each_committed_reading_is_counted_once_duplicates_never(url: str) -> None:
    store(url, [reading(1, T0, 60.0), reading(2, T0 + timedelta(hours=1), 80.0)])
    assert advance(url) == 2
    assert advance(url) == 0  # nothing new: nothing counted again
    assert store(url, [reading(1, T0, 60.0), reading(3, T0 + timedelta(hours=7), 90.0)]) == 1  # seq 1 absorbed
    assert advance(url) == 1
    assert latest(url) == {("o1", "p1", "heart_rate"): (T0 + timedelta(hours=7), 90.0, "d1")}


def test_a_reading_committed_late_by_a_slow_writer_is_not_skipped(url: str) -> None:
    with psycopg.connect(url) as slow, psycopg.connect(url) as fast:
        insert_readings(slow, [reading(1, T0 + timedelta(minutes=1), 61.0)])  # older transaction, committed last
        insert_readings(fast, [reading(2, T0, 62.0, agent="a2")])
        fast.commit()
        assert advance(url, settle=False) == 0  # the slow writer holds the horizon back
        slow.commit()
    assert advance(url) == 2
    assert latest(url)[("o1", "p1", "heart_rate")][1] == 61.0


def test_history_never_replaces_the_newest_value(url: str) -> None:
    store(url, [reading(5, T0, 70.0, device="new-cuff")])
    advance(url)
    store(url, [reading(1, T0 - timedelta(days=3), 99.0, device="old-cuff")])  # an outbox backlog arrives
    advance(url)
    assert latest(url) == {("o1", "p1", "heart_rate"): (T0, 70.0, "new-cuff")}
    store(url, [reading(6, T0 + timedelta(minutes=1), 71.0, device="new-cuff")])
    advance(url)
    assert latest(url)[("o1", "p1", "heart_rate")][1] == 71.0


def test_incremental_summaries_equal_a_rebuild(url: str) -> None:
    rows = [
        reading(2 * i + k, T0 + timedelta(minutes=37 * ((i * 7919) % 120)), 50.0 + i % 13, patient=p, metric=m,
                org=o, agent=f"a-{p}")
        for i in range(1, 120)
        for p, o in (("p1", "o1"), ("p2", "o1"), ("q1", "o2"))
        for k, m in enumerate(("heart_rate", "spo2"))
    ]  # fmt: skip
    for lo in range(0, len(rows), 50):  # out of time order, in several transactions
        store(url, rows[lo : lo + 50])
        advance(url)
    incremental = latest(url)
    assert len(incremental) == 6
    with psycopg.connect(url) as c:
        summaries.rebuild(c)
        c.commit()
    assert latest(url) == incremental
    assert advance(url) == 0  # the rebuild moved the watermark past what it counted


def test_one_advancer_at_a_time_the_other_returns_at_once(url: str) -> None:
    store(url, [reading(1, T0, 60.0)])
    advance(url)
    with psycopg.connect(url) as holder, holder.transaction():
        assert summaries.advance(holder) == 0  # inside an outer transaction: the lock stays held
        other: list[int | None] = []
        t = threading.Thread(target=lambda: other.append(advance(url, settle=False)))
        t.start()
        t.join(30)
        assert other == [None]
    assert advance(url) == 0


def test_reads_are_scoped_to_the_organisation(url: str) -> None:
    store(url, [reading(1, T0, 60.0), reading(1, T0, 70.0, patient="q1", org="o2", agent="b1")])
    for _ in (1, 2):  # before and after the watermark moves
        with psycopg.connect(url) as c:
            mine = summaries.latest(c, org="o1", patients=["p1", "q1"])
        assert [(v.patient_id, v.value) for v in mine] == [("p1", 60.0)]
        advance(url)


def test_reads_are_exact_whether_or_not_the_watermark_has_moved(url: str) -> None:
    def read() -> list[tuple[str, str, float]]:
        with psycopg.connect(url) as c:
            return [(v.patient_id, v.metric, v.value) for v in summaries.latest(c, org="o1", patients=["p1", "p2"])]

    store(url, [reading(1, T0 - timedelta(days=1), 60.0), reading(2, T0, 70.0, metric="spo2")])
    before = read()  # nothing counted yet: all from the readings themselves
    assert before == [("p1", "heart_rate", 60.0), ("p1", "spo2", 70.0)]
    advance(url)
    assert read() == before
    store(url, [reading(3, T0 + timedelta(minutes=5), 80.0), reading(4, T0 - timedelta(days=9), 10.0, metric="spo2")])
    after = read()  # half counted, half not: the newer counted value still wins over an older uncounted one
    assert after == [("p1", "heart_rate", 80.0), ("p1", "spo2", 70.0)]
    advance(url)
    assert read() == after


def days(url: str) -> dict[tuple[str, str, object], datetime]:
    """reading_days itself (what advance has counted)."""
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT org_id, patient_id, day, first_at FROM reading_days").fetchall()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def test_adherence_counts_days_with_a_reading_before_now_whether_or_not_counted(url: str) -> None:
    now = T0  # 07:30 UTC
    rows = [reading(i, now - timedelta(days=2 * i, hours=1), 60.0) for i in range(20)]  # every other day
    rows += [reading(100, now - timedelta(days=30, hours=1), 60.0)]  # outside the 30 days
    rows += [reading(101, now + timedelta(hours=2), 60.0, metric="spo2")]  # later today: not yet
    rows += [reading(1, now - timedelta(days=1), 60.0, patient="q1", org="o2", agent="b1")]  # another org

    def read(at: datetime = now) -> dict[str, int]:
        with psycopg.connect(url) as c:
            return summaries.adherence(c, org="o1", patients=["p1", "p2", "q1"], now=at)

    store(url, rows)
    before = read()  # nothing counted yet: all from the readings themselves
    assert before == {"p1": 15}
    advance(url)
    assert read() == before
    assert read(now + timedelta(hours=3)) == {"p1": 15}  # today was counted already (06:30)
    store(url, [reading(200, now - timedelta(days=1, hours=3), 61.0)])  # a missing day arrives late
    assert read() == {"p1": 16}  # half counted, half not
    advance(url)
    assert read() == {"p1": 16}
    with psycopg.connect(url) as c:
        assert summaries.adherence(c, org="o1", patients=["p1"], now=now + timedelta(days=10)) == {"p1": 11}


def test_reading_days_keep_the_earliest_reading_of_each_day_and_equal_a_rebuild(url: str) -> None:
    store(url, [reading(1, T0, 60.0)])
    advance(url)
    store(url, [reading(2, T0 - timedelta(hours=5), 60.0), reading(3, T0 + timedelta(hours=5), 60.0)])
    advance(url)
    incremental = days(url)
    assert incremental == {("o1", "p1", T0.date()): T0 - timedelta(hours=5)}
    with psycopg.connect(url) as c:
        summaries.rebuild(c)
        c.commit()
    assert days(url) == incremental
