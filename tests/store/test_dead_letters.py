from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.database import IngestDatabase
from store.channels import notify_watermark
from store.connection import synchronous_commit
from store.dead_letters import DeadLetterRow, SuppressedRow, insert_dead_letters, prune_dead_letters, record_suppressed

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def conn(db: str):
    with psycopg.connect(db) as c:  # dead letters name no row of another table: nothing to seed
        yield c


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
