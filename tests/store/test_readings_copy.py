"""insert_readings uses binary COPY with declared types: every value must survive the round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.readings import ReadingRow, insert_readings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
nasty = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


@pytest.fixture
def conn(db: str):
    with psycopg.connect(db) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        c.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p1', 'o1', 'A')")
        c.commit()
        yield c


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            nasty,
            st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**6), 10**6)),
            st.lists(nasty, max_size=3),
            st.one_of(st.none(), nasty),
            st.integers(0, 2**63 - 1),
            st.integers(-(10**12), 10**12),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_round_trip_of_awkward_values(conn: psycopg.Connection, raw) -> None:
    rows = [
        ReadingRow(
            T0 + timedelta(microseconds=us), "o1", "p1", f"{i}{device}", device, "heart_rate", value, seq, flags, dt
        )
        for i, (device, value, flags, dt, seq, us) in enumerate(raw)
    ]
    assert insert_readings(conn, rows) == len(rows)
    got = conn.execute(
        "SELECT time, org_id, patient_id, agent_id, device_id, metric, value, seq, flags, device_time FROM readings"
    ).fetchall()
    conn.rollback()
    assert sorted(map(tuple, got), key=lambda r: r[3]) == sorted(map(tuple, rows), key=lambda r: r[3])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(nasty, st.none()), max_size=5))
def test_memoised_flags_dumper_writes_what_psycopg_writes(conn: psycopg.Connection, flags) -> None:
    from psycopg.pq import Format

    from store import readings

    # What COPY's set_types picks for text[] without the memoised dumper.
    generic = conn.adapters.get_dumper_by_oid(1009, Format.BINARY)(list, conn)
    assert readings._FlagsBinaryDumper(list, conn).dump(flags) == generic.dump(flags)


def test_copy_uses_the_memoised_flags_dumper(conn: psycopg.Connection) -> None:
    from store import readings

    readings._FlagsBinaryDumper._memo.clear()
    row = ReadingRow(T0, "o1", "p1", "a1", "d1", "heart_rate", 60.0, 1, ["contact", "moved"], None)
    assert insert_readings(conn, [row, row._replace(seq=2, flags=[])]) == 2
    assert set(k[1] for k in readings._FlagsBinaryDumper._memo) == {("contact", "moved"), ()}
    got = conn.execute("SELECT seq, flags FROM readings ORDER BY seq").fetchall()
    conn.rollback()
    assert got == [(1, ["contact", "moved"]), (2, [])]


def test_session_staging_table_without_create_or_truncate(db: str) -> None:
    from store.readings import create_staging

    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        c.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p1', 'o1', 'A')")
        create_staging(c)
        row = ReadingRow(T0, "o1", "p1", "a1", "d1", "heart_rate", 60.0, 1, [], None)
        with c.transaction():
            assert insert_readings(c, [row], staging_ready=True) == 1
            assert insert_readings(c, [row._replace(seq=2)], staging_ready=True) == 1  # row 1 conflicts
        with pytest.raises(psycopg.errors.DivisionByZero), c.transaction():  # noqa: PT012  rolled back
            insert_readings(c, [row._replace(seq=3)], staging_ready=True)
            c.execute("SELECT 1/0")
        with c.transaction():
            assert insert_readings(c, [row, row._replace(seq=4)], staging_ready=True) == 1
        assert c.execute("SELECT count(*) FROM readings_staging").fetchone() == (0,)
        assert c.execute("SELECT array_agg(seq ORDER BY seq) FROM readings").fetchone() == ([1, 2, 4],)
