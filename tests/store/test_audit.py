"""The audit aggregate in PostgreSQL: rows append-only for the application role and refused to
every role by triggers; concurrent writers and sealers build one chain; a row is sealed only once
its transaction has finished (the chain never gets a row behind its end)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from store import audit as audit_store
from store.app_pool import PoolOptions, open_app_pool
from store.audit import AuditEntry
from tests.support.audit import seal_all

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
_CHANGES = (
    "UPDATE audit_log SET outcome = 'failed'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log CASCADE",
    "UPDATE audit_chain SET hash = prev_hash",
    "DELETE FROM audit_chain",
    "TRUNCATE audit_chain",
)


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(seconds=i),
        action="patient.read",
        object_type="patient",
        outcome="success",
        org_id="o1",
        patient_id="p1",
        object_id="p1",
        request_id=f"r{i}",
    )


def _fill(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            with conn.transaction():
                audit_store.append(conn, _entry(i))
    seal_all(url)


def test_the_app_role_cannot_change_the_log_and_the_trigger_refuses_everyone(db) -> None:
    _fill(db, 2)
    pool = open_app_pool(PoolOptions(url=db, min_size=1, max_size=1))
    try:
        with pool.connection() as conn:
            for statement in _CHANGES:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                    conn.execute(statement)
            with conn.transaction():  # appending and sealing is what it may do
                audit_store.append(conn, _entry(99))
            seal_all(db, seal=lambda: audit_store.seal(conn))
    finally:
        pool.close()
    with psycopg.connect(db, autocommit=True) as conn:  # the owner (a superuser here) is refused by the trigger
        for statement in _CHANGES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 3


def test_concurrent_writers_and_sealers_keep_one_unbroken_chain(db) -> None:
    """Eight writers commit while two sealers race: every row is chained exactly once."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def writer(k: int) -> None:
        try:
            with psycopg.connect(db, autocommit=True) as conn:
                barrier.wait()
                for i in range(25):
                    with conn.transaction():
                        conn.execute("SELECT 1")  # other work of the request first
                        audit_store.append(conn, _entry(k * 100 + i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def sealer() -> None:
        try:
            with psycopg.connect(db, autocommit=True) as conn:
                while writing.is_set():
                    audit_store.seal(conn, limit=13)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    sealers = [threading.Thread(target=sealer) for _ in range(2)]
    for t in writers + sealers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    for t in sealers:
        t.join()
    assert not errors
    seal_all(db)
    with psycopg.connect(db, autocommit=True) as conn:
        report = audit_store.verify_chain(audit_store.iter_chain(conn))
        sealed = conn.execute("SELECT count(DISTINCT audit_id) FROM audit_chain").fetchone()[0]
    assert (report.ok, report.rows, report.head_seq, sealed) == (True, 200, 200, 200)


def test_a_row_is_sealed_only_once_its_transaction_has_finished(db) -> None:
    with psycopg.connect(db, autocommit=True) as slow, psycopg.connect(db, autocommit=True) as other:
        with slow.transaction():
            audit_store.append(slow, _entry(1))  # still open: its row must not be chained yet
            with other.transaction():
                audit_store.append(other, _entry(2))
            assert audit_store.seal(other) == 0  # the open transaction holds the horizon back
        seal_all(db)
        ids = [link.audit_id for link in audit_store.iter_chain(other)]
    assert ids == [1, 2]
