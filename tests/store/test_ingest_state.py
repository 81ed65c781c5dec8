from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.agents import create_agent, create_org, create_patient
from store.ingest_db import IngestDatabase
from store.ingest_state import (
    DeadLetterRow,
    SuppressedRow,
    advance_receipts,
    insert_dead_letters,
    merge_resolved,
    notify_watermark,
    prune_dead_letters,
    record_suppressed,
    synchronous_commit,
)

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


def test_dead_letters_sync_commit_and_notify(conn: psycopg.Connection) -> None:
    insert_dead_letters(
        conn, [DeadLetterRow("vigil/v1/o1/a1/up/readings", "decryption_failed", "", b"\x00", "o1", "a1")]
    )
    conn.commit()
    assert conn.execute("SELECT reason FROM dead_letters").fetchall() == [("decryption_failed",)]
    assert synchronous_commit(conn) == "on"
    conn.execute("LISTEN vigil_readings")
    conn.commit()
    with psycopg.connect(conn.info.dsn, autocommit=True) as other:
        horizon = notify_watermark(other)
    note = next(conn.notifies(timeout=5, stop_after=1))
    assert int(note.payload) == horizon > 0


def test_dead_letters_keep_a_prefix_with_the_whole_payloads_length_and_hash(conn: psycopg.Connection) -> None:
    whole = bytes(range(256)) * 40
    insert_dead_letters(
        conn,
        [
            DeadLetterRow(
                "vigil/v1/o1/a1/up/x",
                "bad_topic",
                "",
                whole[:100],
                "o1",
                "a1",
                len(whole),
                hashlib.sha256(whole).digest(),
            ),
            DeadLetterRow("vigil/v1/o1/a1/up/readings", "malformed", "", b"abc", "o1", "a1"),  # complete: derived
        ],
    )
    rows = conn.execute("SELECT octet_length(payload), payload_bytes, payload_sha256 FROM dead_letters ORDER BY id")
    assert rows.fetchall() == [
        (100, len(whole), hashlib.sha256(whole).digest()),
        (3, 3, hashlib.sha256(b"abc").digest()),
    ]
    with pytest.raises(psycopg.errors.CheckViolation):  # a prefix can never be longer than the payload
        insert_dead_letters(conn, [DeadLetterRow("t", "r", "", b"abcd", None, None, 3, bytes(32))])


def test_suppressed_dead_letters_add_up_per_agent_and_hour(conn: psycopg.Connection) -> None:
    now = datetime(2026, 3, 1, 10, 17, tzinfo=UTC)
    record_suppressed(
        conn, [SuppressedRow("a1", "o1", 5, 500, "malformed"), SuppressedRow("", None, 1, 9, "bad_topic")], now=now
    )
    record_suppressed(conn, [SuppressedRow("a1", "o1", 2, 20, "bad_topic")], now=now + timedelta(minutes=30))
    record_suppressed(conn, [SuppressedRow("a1", "o1", 1, 1, "malformed")], now=now + timedelta(hours=1))
    rows = conn.execute(
        "SELECT agent_id, hour, messages, payload_bytes, last_reason FROM dead_letter_suppressed "
        "ORDER BY agent_id, hour"
    ).fetchall()
    assert rows == [
        ("", datetime(2026, 3, 1, 10, tzinfo=UTC), 1, 9, "bad_topic"),
        ("a1", datetime(2026, 3, 1, 10, tzinfo=UTC), 7, 520, "bad_topic"),
        ("a1", datetime(2026, 3, 1, 11, tzinfo=UTC), 1, 1, "malformed"),
    ]


def test_retention_deletes_old_dead_letters_and_summaries_in_chunks(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        insert_dead_letters(conn, [DeadLetterRow("t", "malformed", "", b"x", None, None)] * 25)
        conn.execute("UPDATE dead_letters SET received_at = %s WHERE id <= 23", (T0 - timedelta(days=40),))
        record_suppressed(conn, [SuppressedRow("a1", None, 3, 3, "malformed")], now=T0 - timedelta(days=40))
        record_suppressed(conn, [SuppressedRow("a1", None, 1, 1, "malformed")], now=T0)
        assert prune_dead_letters(conn, before=T0 - timedelta(days=30), limit=10) == 10
        assert prune_dead_letters(conn, before=T0 - timedelta(days=30), limit=10) == 10
        assert prune_dead_letters(conn, before=T0 - timedelta(days=30), limit=10) == 3
        assert prune_dead_letters(conn, before=T0 - timedelta(days=30), limit=10) == 0
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (2,)
        assert conn.execute("SELECT hour FROM dead_letter_suppressed").fetchall() == [(T0,)]
    db_ = IngestDatabase.connect(db)
    try:
        assert db_.prune_dead_letters(before=T0 + timedelta(days=400), limit=1, rounds=5) == 2
    finally:
        db_.close()
