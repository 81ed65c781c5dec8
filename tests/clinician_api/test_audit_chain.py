"""The audit log is append-only and tamper-evident: the app's role cannot change it, the trigger
refuses changes even to the owner, concurrent writers keep one chain, and `vigil audit verify`
names the row a superuser tampered with."""

from __future__ import annotations

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


def _fill(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            with conn.transaction():
                audit_store.append(conn, _entry(i, subjects=("p2", "p3") if i % 3 == 0 else ()))


def _verify(url: str, *extra: str):
    return CliRunner().invoke(audit_app, ["verify", "--database-url", url, *extra])


def test_python_recomputes_the_database_hash_of_every_row(db) -> None:
    _fill(db, 20)
    with psycopg.connect(db, autocommit=True) as conn:
        report = audit_store.verify_chain(audit_store.iter_chain(conn))
    assert report.ok
    assert report.rows == 20
    assert report.first_seq == 1
    result = _verify(db)
    assert result.exit_code == 0
    assert "intact: 20 rows" in result.output


def test_tampering_as_the_superuser_is_found_and_named(db) -> None:
    _fill(db, 10)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute("UPDATE audit_log SET outcome = 'denied' WHERE seq = 6")
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    result = _verify(db)
    assert result.exit_code == 1
    assert "BROKEN at row 6: content_changed" in result.output
    doc = json.loads(_verify(db, "--json").output)
    assert [(b["seq"], b["kind"]) for b in doc["breaks"]] == [(6, "content_changed")]


def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(db) -> None:
    _fill(db, 10)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute("UPDATE audit_log SET actor_role = 'admin' WHERE seq = 4")
        conn.execute("UPDATE audit_log SET hash = sha256(prev_hash || audit_payload(audit_log)) WHERE seq = 4")
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    doc = json.loads(_verify(db, "--json").output)
    assert [(b["seq"], b["kind"]) for b in doc["breaks"]] == [(5, "link_broken")]


def test_deleted_rows_are_found_and_the_anchor_catches_a_cut_tail(db) -> None:
    _fill(db, 10)
    head = json.loads(_verify(db, "--json").output)["head"]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute("DELETE FROM audit_log WHERE seq IN (3, 10)")
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    doc = json.loads(_verify(db, "--json", "--anchor", head).output)
    kinds = [(b["seq"], b["kind"]) for b in doc["breaks"]]
    assert (3, "rows_missing") in kinds
    assert (4, "link_broken") in kinds
    assert (10, "anchor_mismatch") in kinds


def test_the_app_role_cannot_change_the_log_and_the_trigger_refuses_everyone(db) -> None:
    _fill(db, 2)
    pool = open_app_pool(PoolOptions(url=db, min_size=1, max_size=1))
    try:
        with pool.connection() as conn:
            for statement in ("UPDATE audit_log SET outcome = 'failed'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                    conn.execute(statement)
            with conn.transaction():  # appending is what it may do
                audit_store.append(conn, _entry(99))
    finally:
        pool.close()
    with psycopg.connect(db, autocommit=True) as conn:  # the owner (a superuser here) is refused by the trigger
        for statement in ("UPDATE audit_log SET outcome = 'failed'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 3


def test_concurrent_writers_keep_one_unbroken_chain(db) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

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

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with psycopg.connect(db, autocommit=True) as conn:
        report = audit_store.verify_chain(audit_store.iter_chain(conn))
    assert report.ok
    assert report.rows == 200
    assert report.head_seq == 200


def test_a_rolled_back_change_leaves_no_audit_row(db) -> None:
    _fill(db, 1)
    with psycopg.connect(db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():  # noqa: PT012 - the change fails
            audit_store.append(conn, _entry(5))
            conn.execute(
                "INSERT INTO users (org_id, email, display_name, role, created_at, updated_at) "
                "VALUES ('o1', 'UPPER@x', 'x', 'nurse', now(), now())"
            )  # the change fails
        assert audit_store.count(conn) == 1
        with conn.transaction():
            audit_store.append(conn, _entry(6))
    assert _verify(db).exit_code == 0


@pytest.mark.asyncio
async def test_export_is_an_accounting_of_one_patients_disclosures(client, world) -> None:
    add_alert(world, "a", "o1", "p2", "low", opened=T0)
    await sign_in(client, world["c1"], T0)
    await client.get(f"{API}/patients")  # lists p1 and p2
    await client.get(f"{API}/patients/p2")
    await client.get(f"{API}/patients/p1")
    await sign_in(client, world["c2"], T0)
    await client.get(f"{API}/patients/p2")  # denied
    result = CliRunner().invoke(
        audit_app,
        ["export", "--database-url", world.url, "--patient", "p2", "--from", "2026-03-01", "--to", "2026-03-01"],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    got = [(r["action"], r["outcome"], r["via"], r["actor_role"]) for r in rows]
    assert got == [
        ("panel.read", "success", "listed", "clinician"),
        ("patient.read", "success", "subject", "clinician"),
        ("patient.read", "denied", "subject", "clinician"),
    ]
    as_json = CliRunner().invoke(
        audit_app,
        [
            "export",
            "--database-url",
            world.url,
            "--patient",
            "p2",
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-03",
            "--format",
            "json",
        ],
    )
    assert json.loads(as_json.stdout) == []
