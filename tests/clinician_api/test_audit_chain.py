"""The audit log is append-only and tamper-evident: the app's role cannot change it, a trigger
refuses changes even to the owner, concurrent writers and sealers build one chain, and `vigil
audit verify` names the link a superuser tampered with."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from clinician_api.audit_cli import app as audit_app
from store import audit as audit_store
from store.audit import AuditEntry
from tests.clinician_api.world import T0, add_alert, sign_in
from tests.support.audit import seal_all

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
    if sealed:
        seal_all(url)


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
        counts = []
        while audit_store.unsealed(conn):
            if n := audit_store.seal(conn, limit=8):
                counts.append(n)
        report = audit_store.verify_chain(audit_store.iter_chain(conn))
    # batches of at most 8; fewer when another test run's open transaction held the horizon mid-way
    assert sum(counts) == 20
    assert max(counts) <= 8
    assert len(counts) >= 3
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
    seal_all(db)
    assert _verify(db).exit_code == 0


@pytest.mark.asyncio
async def test_the_api_seals_its_own_audit_rows(client, world, app) -> None:
    await sign_in(client, world["c1"], T0)
    await client.get(f"{API}/patients")
    # what the sealer's thread runs every second
    await asyncio.to_thread(seal_all, world.url, seal=app.state.sealer.seal_now)
    with psycopg.connect(world.url, autocommit=True) as conn:
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
