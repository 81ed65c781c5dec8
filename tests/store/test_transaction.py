"""store.transaction: the caller's COMMIT, and every psycopg error leaving as a store error."""

from __future__ import annotations

import psycopg
import pytest

from store.errors import Conflict, DatabaseUnavailable, Rejected
from store.patients import create_org
from store.transaction import transaction
from vigil_testkit.net import free_port


def orgs(db: str) -> list[str]:
    with psycopg.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT org_id FROM organizations ORDER BY 1")]


def test_commits_only_when_told(db: str) -> None:
    with transaction(db) as tx:
        create_org(tx.conn, "clinic-1", "Clinic")
    assert orgs(db) == []  # left without a commit: rolled back
    with transaction(db) as tx:
        create_org(tx.conn, "clinic-1", "Clinic")
        tx.commit()
    assert orgs(db) == ["clinic-1"]


def test_errors_leave_as_store_errors_without_the_values_written(db: str) -> None:
    with transaction(db) as tx:
        create_org(tx.conn, "clinic-1", "Clinic")
        tx.commit()
    with pytest.raises(Conflict), transaction(db) as tx:  # store's own translation, unchanged
        create_org(tx.conn, "clinic-1", "Again")
    with pytest.raises(Rejected) as data, transaction(db) as tx:  # a data error: SQLSTATE only
        tx.conn.execute("SELECT %s::int", ("Ann Secretname",))
    assert data.value.sqlstate == "22P02"
    assert "Secretname" not in str(data.value)
    with pytest.raises(Rejected) as integrity, transaction(db) as tx:  # class 23: the constraint, not the value
        tx.conn.execute(
            "INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p1', NULL, %s)", ("Ann Secretname",)
        )
    assert integrity.value.sqlstate == "23502"
    assert "Secretname" not in str(integrity.value)
    with pytest.raises(Rejected) as raised, transaction(db) as tx:  # RAISE: the text is the trigger's own
        tx.conn.execute("DO $$ BEGIN RAISE EXCEPTION 'doomed'; END $$")
    assert str(raised.value) == "the database refused the change: doomed"
    assert orgs(db) == ["clinic-1"]


def test_an_unreachable_database(db: str) -> None:
    with pytest.raises(DatabaseUnavailable) as caught, transaction(f"postgresql://127.0.0.1:{free_port()}/x"):
        pass
    assert caught.value.sqlstate is None
    assert str(caught.value) == "cannot connect to the database: unreachable"
