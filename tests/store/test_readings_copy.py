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
