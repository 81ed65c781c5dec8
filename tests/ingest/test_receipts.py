from __future__ import annotations

import itertools
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.receipts import advance_receipts, merge_resolved
from store.agents import create_agent
from store.patients import create_org, create_patient

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_merge_examples() -> None:
    assert merge_resolved(0, [(1, 20)]) == (20, [])
    assert merge_resolved(0, [(21, 40)]) == (0, [(21, 40)])
    assert merge_resolved(0, [(21, 40), (1, 20)]) == (40, [])
    assert merge_resolved(10, [(1, 5), (3, 12), (14, 15), (16, 18), (30, 30)]) == (12, [(14, 18), (30, 30)])


@given(st.integers(0, 50), st.lists(st.tuples(st.integers(1, 80), st.integers(0, 10)), max_size=20))
def test_merge_matches_a_set_model(through: int, raw: list[tuple[int, int]]) -> None:
    ranges = [(a, a + n) for a, n in raw]
    covered = set(range(through + 1)) | {s for a, b in ranges for s in range(a, b + 1)}
    expect = 0
    while expect + 1 in covered:
        expect += 1
    got, rest = merge_resolved(through, ranges)
    assert got == max(expect, through)
    assert {s for a, b in rest for s in range(a, b + 1)} == {s for s in covered if s > got}
    assert all(b + 1 < c for (_, b), (c, _) in itertools.pairwise(rest))  # merged, ordered


@pytest.fixture
def conn(db: str):
    with psycopg.connect(db) as c:
        create_org(c, "o1", "Clinic")
        create_patient(c, org_id="o1", patient_id="p1", display_name="A")
        for a in ("a1", "a2"):
            create_agent(
                c,
                org_id="o1",
                agent_id=a,
                patient_id="p1",
                password_hash="$7$101$x$y",
                token_sha256=bytes(32),
                expires_at=T0,
                now=T0,
            )
        c.commit()
        yield c


def test_receipts_advance_over_out_of_order_commits(conn: psycopg.Connection) -> None:
    assert advance_receipts(conn, {"a1": ("o1", [(21, 40)]), "a2": ("o1", [(1, 5)])}, now=T0) == {"a1": 0, "a2": 5}
    conn.commit()
    assert advance_receipts(conn, {"a1": ("o1", [(41, 60)])}, now=T0) == {"a1": 0}
    assert advance_receipts(conn, {"a1": ("o1", [(1, 20)])}, now=T0) == {"a1": 60}
    conn.commit()
    assert advance_receipts(conn, {"a1": ("o1", [(1, 20)])}, now=T0) == {"a1": 60}  # duplicates
    assert conn.execute("SELECT count(*) FROM agent_resolved").fetchone() == (0,)
