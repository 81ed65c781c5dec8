"""The audit log is append-only and tamper-evident: the app's role cannot change it, a trigger
refuses changes even to the owner, concurrent writers and sealers build one chain, and `vigil
audit verify` names the link a superuser tampered with."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from datetime import timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from clinician_api.audit_cli import app as audit_app
from store import audit as audit_store
from store.app_pool import PoolOptions, open_app_pool
from store.audit import AuditEntry
from tests.clinician_api.world import T0, add_alert, sign_in

API = "/api/v1"
_CHANGES = (
    "UPDATE audit_log SET outcome = 'failed'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log CASCADE",
    "UPDATE audit_chain SET hash = prev_hash",
    "DELETE FROM audit_chain",
    "TRUNCATE audit_chain",
)


def _entry(i: int, patient: str | None = "p1", subjects: tuple[str, ...] = ()) -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(seconds=i),
        action="patient.read",
        object_type="patient",
        outcome="success",
        org_id="o1",
        patient_id=patient,
        subjects=subjects,
        object_id=patient,
        reason="é ✓ unicode",
        client_addr="10.0.0.1",
        request_id=f"r{i}",
    )


def _fill(url: str, n: int, *, sealed: bool = True) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            with conn.transaction():
                audit_store.append(conn, _entry(i, subjects=("p2", "p3") if i % 3 == 0 else ()))
        while sealed and audit_store.seal(conn, limit=7):
            pass


def _tamper(url: str, *statements: str, params: tuple = ()) -> None:
    """As the superuser, with every trigger (append-only, foreign keys) off for this session."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement, params or None)


def _verify(url: str, *extra: str):
    return CliRunner().invoke(audit_app, ["verify", "--database-url", url, *extra])


def _breaks(url: str, *extra: str) -> list[tuple[int, str]]:
    doc = json.loads(_verify(url, "--json", *extra).output)
    return [(b["seq"], b["kind"]) for b in doc["breaks"]]


def test_sealing_chains_every_row_once_in_batches(db) -> None:
    _fill(db, 20, sealed=False)
    assert json.loads(_verify(db, "--json").output)["unsealed"] == 20
    with psycopg.connect(db, autocommit=True) as conn:
        assert [audit_store.seal(conn, limit=8) for _ in range(4)] == [8, 8, 4, 0]
        report = audit_store.verify_chain(audit_store.iter_chain(conn))
        assert audit_store.unsealed(conn) == 0
    assert (report.ok, report.rows, report.first_seq) == (True, 20, 1)
    result = _verify(db)
    assert result.exit_code == 0
    assert "intact: 20 rows" in result.output


def test_tampering_as_the_superuser_is_found_and_named(db) -> None:
    _fill(db, 10)
    _tamper(db, "UPDATE audit_log SET outcome = 'denied' WHERE audit_id = 6")
    result = _verify(db)
    assert result.exit_code == 1
    assert "BROKEN at row 6: content_changed" in result.output
    assert _breaks(db) == [(6, "content_changed")]


def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(db) -> None:
    _fill(db, 10)
    _tamper(db, "UPDATE audit_log SET actor_role = 'admin' WHERE audit_id = 4")
    with psycopg.connect(db, autocommit=True) as conn:
        link = next(x for x in audit_store.iter_chain(conn) if x.seq == 4)
    assert link.row is not None
    forged = audit_store.chain_hash(link.prev_hash, 4, link.row)
    _tamper(db, "UPDATE audit_chain SET hash = %s WHERE seq = 4", params=(forged,))
    assert _breaks(db) == [(5, "link_broken")]


def test_deleted_rows_and_links_are_found_and_the_anchor_catches_a_cut_tail(db) -> None:
    _fill(db, 10)
    head = json.loads(_verify(db, "--json").output)["head"]
    _tamper(db, "DELETE FROM audit_log WHERE audit_id = 3", "DELETE FROM audit_chain WHERE seq IN (6, 10)")
    assert _breaks(db, "--anchor", head) == [
        (3, "rows_missing"),
        (6, "rows_missing"),
        (7, "link_broken"),
        (10, "anchor_mismatch"),
    ]


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
            assert audit_store.seal(conn) == 1
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
    with psycopg.connect(db, autocommit=True) as conn:
        while audit_store.seal(conn):
            pass
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
        assert audit_store.seal(other) == 2
        ids = [link.audit_id for link in audit_store.iter_chain(other)]
    assert ids == [1, 2]


def test_a_rolled_back_change_leaves_no_audit_row(db) -> None:
    _fill(db, 1)
    with psycopg.connect(db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():  # noqa: PT012 - the change fails
            audit_store.append(conn, _entry(5))
            conn.execute(
                "INSERT INTO users (org_id, email, display_name, role, created_at, updated_at) "
                "VALUES ('o1', 'UPPER@x', 'x', 'nurse', now(), now())"
            )
        assert audit_store.count(conn) == 1
        with conn.transaction():
            audit_store.append(conn, _entry(6))
        audit_store.seal(conn)
    assert _verify(db).exit_code == 0


@pytest.mark.asyncio
async def test_the_api_seals_its_own_audit_rows(client, world, app) -> None:
    await sign_in(client, world["c1"], T0)
    await client.get(f"{API}/patients")
    await asyncio.to_thread(app.state.sealer.seal_now)  # what the sealer's thread runs every second
    with psycopg.connect(world.url, autocommit=True) as conn:
        assert audit_store.unsealed(conn) == 0
        assert audit_store.verify_chain(audit_store.iter_chain(conn)).rows == audit_store.count(conn)


@pytest.mark.asyncio
async def test_export_is_an_accounting_of_one_patients_disclosures(client, world) -> None:
    add_alert(world, "a", "o1", "p2", "low", opened=T0)
    await sign_in(client, world["c1"], T0)
    await client.get(f"{API}/patients")  # lists p1 and p2
    await client.get(f"{API}/patients/p2")
    await client.get(f"{API}/patients/p1")
    await sign_in(client, world["c2"], T0)
    await client.get(f"{API}/patients/p2")  # denied
    args = ["export", "--database-url", world.url, "--patient", "p2"]
    result = CliRunner().invoke(audit_app, [*args, "--from", "2026-03-01", "--to", "2026-03-01"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    got = [(r["action"], r["outcome"], r["via"], r["actor_role"]) for r in rows]
    assert got == [
        ("panel.read", "success", "listed", "clinician"),
        ("patient.read", "success", "subject", "clinician"),
        ("patient.read", "denied", "subject", "clinician"),
    ]
    later = CliRunner().invoke(audit_app, [*args, "--from", "2026-03-02", "--to", "2026-03-03", "--format", "json"])
    assert json.loads(later.stdout) == []
