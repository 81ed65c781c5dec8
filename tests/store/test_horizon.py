"""The database's horizon (migration 0030, ``vigil_horizon()``): what the readings feed, the panel
summaries, the audit sealer and the readings channel read up to.

Transaction ids are cluster-wide. A long write transaction in another database of the same server
(a bulk load, another application) must not hold back this database's alert engine or audit
chain; a transaction of this database, and one the function cannot place, still must."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from store import audit as audit_store
from store.feed import readings_since
from store.readings import ReadingRow, insert_readings
from tests.store.test_audit import _entry
from tests.support.pg import temporary_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def elsewhere() -> Iterator[psycopg.Connection]:
    """A connection to another database of the same server, with a write transaction open."""
    with temporary_database("vigil_horizon") as url, psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE busy (n int)")
        conn.execute("INSERT INTO busy VALUES (1)")  # holds a transaction id from here on
        yield conn
        conn.rollback()


def _seed(url: str) -> None:
    with psycopg.connect(url) as c:
        c.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        c.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p1', 'o1', 'A')")


def _reading(seq: int) -> ReadingRow:
    return ReadingRow(T0, "o1", "p1", "a1", "dev1", "heart_rate", 70.0, seq, [], None)


def _xid(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0])  # type: ignore[index]


def _horizon(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT vigil_horizon()::text::bigint").fetchone()[0])  # type: ignore[index]


def _passes(conn: psycopg.Connection, xid: int) -> bool:
    """Whether this database's horizon gets above ``xid`` within 30 s. On a shared server other
    work (CREATE DATABASE locks only shared catalogues) runs transactions the function cannot
    place, each holding the horizon for its moment; the open one under test lasts throughout."""
    deadline = time.monotonic() + 30
    while _horizon(conn) <= xid:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_another_databases_open_transaction_holds_nothing_back(db: str, elsewhere: psycopg.Connection) -> None:
    _seed(db)
    foreign = _xid(elsewhere)
    with psycopg.connect(db, autocommit=True) as conn:
        start = readings_since(conn, 0).watermark
        with psycopg.connect(db) as writer:
            insert_readings(writer, [_reading(1)])
        audit_store.append(conn, _entry(1))
        # The cluster-wide horizon is stuck behind the other database's transaction ...
        cluster = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
        assert cluster is not None
        assert cluster[0] <= foreign
        # ... this database's is not: the reading is fed, the audit row sealed.
        assert _passes(conn, foreign)
        assert [r.seq for r in readings_since(conn, start).readings] == [1]
        assert audit_store.seal(conn) == 1
        assert audit_store.unsealed(conn) == 0


def test_this_databases_open_transaction_holds_the_horizon(db: str, elsewhere: psycopg.Connection) -> None:
    _seed(db)
    with psycopg.connect(db, autocommit=True) as conn, psycopg.connect(db) as slow:
        start = readings_since(conn, 0).watermark
        insert_readings(slow, [_reading(1)])  # open: lower id, commits last
        with psycopg.connect(db) as fast:
            insert_readings(fast, [_reading(2)])
        assert _horizon(conn) <= _xid(slow)
        assert readings_since(conn, start).readings == []
        slow.commit()
        page = readings_since(conn, start)
        assert sorted(r.seq for r in page.readings) == [1, 2]


def test_a_transaction_it_cannot_place_counts(db: str) -> None:
    """An id taken without touching a table (no relation lock names its database) holds the
    horizon wherever it is: the function only skips what it can prove is another database's."""
    with temporary_database("vigil_horizon") as url, psycopg.connect(url) as other, psycopg.connect(db) as conn:
        unplaced = _xid(other)  # pg_current_xact_id() assigns an id and locks no table
        assert _horizon(conn) <= unplaced
        other.rollback()
        assert _passes(conn, unplaced)
