from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from rpm_core.keys import AgentKeys
from store.agents import (
    activate_agent,
    assign_agent,
    broker_accounts,
    create_agent,
    list_agents,
    load_agents,
    revoke_agent,
)
from store.errors import Conflict, NotFound
from store.patients import create_org, create_patient

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DIGEST = bytes(32)


@pytest.fixture
def conn(db: str):
    with psycopg.connect(db) as c:
        create_org(c, "clinic-1", "Clinic")
        create_patient(c, org_id="clinic-1", patient_id="p1", display_name="A")
        create_patient(c, org_id="clinic-1", patient_id="p2", display_name="B")
        c.commit()
        yield c


def new_agent(c: psycopg.Connection, agent: str = "agt-1", patient: str = "p1") -> None:
    create_agent(
        c,
        org_id="clinic-1",
        agent_id=agent,
        patient_id=patient,
        password_hash="$7$101$x$y",
        token_sha256=DIGEST,
        expires_at=T0 + timedelta(days=7),
        now=T0,
    )


def test_lifecycle_pending_active_revoked(conn: psycopg.Connection) -> None:
    new_agent(conn)
    rec = load_agents(conn, ["agt-1"])["agt-1"]
    assert (rec.status, rec.keys, rec.token_sha256) == ("pending", None, DIGEST)
    assert [a.agent_id for a in broker_accounts(conn)] == ["agt-1"]
    keys = AgentKeys.generate().public()
    assert activate_agent(conn, "agt-1", keys, agent_version="0.1", now=T0)
    assert not activate_agent(conn, "agt-1", keys, agent_version="0.1", now=T0)  # token is single use
    rec = load_agents(conn, ["agt-1"])["agt-1"]
    assert (rec.status, rec.keys, rec.token_sha256) == ("active", keys, None)
    revoke_agent(conn, "agt-1", now=T0 + timedelta(days=1))
    assert load_agents(conn, ["agt-1"])["agt-1"].status == "revoked"
    assert broker_accounts(conn) == []
    with pytest.raises(Conflict):
        assign_agent(conn, "agt-1", "p2", now=T0 + timedelta(days=2))


def test_reassignment_keeps_history_and_maps_by_time(conn: psycopg.Connection) -> None:
    new_agent(conn)
    assign_agent(conn, "agt-1", "p2", now=T0 + timedelta(days=3))
    rec = load_agents(conn, ["agt-1"])["agt-1"]
    assert [(a.patient_id, a.valid_to) for a in rec.assignments] == [("p1", T0 + timedelta(days=3)), ("p2", None)]
    assert rec.patient_at(T0 + timedelta(days=1)) == "p1"
    assert rec.patient_at(T0 + timedelta(days=4)) == "p2"
    assert rec.patient_at(T0 - timedelta(days=30)) == "p2"  # before any assignment: the current one
    assert list_agents(conn)[0][:4] == ("agt-1", "clinic-1", "pending", "p2")


def test_missing_org_patient_or_agent_and_duplicates(conn: psycopg.Connection) -> None:
    with pytest.raises(NotFound):
        new_agent(conn, patient="nobody")
    with pytest.raises(NotFound):
        create_patient(conn, org_id="no-org", patient_id="p9", display_name="X")
    conn.rollback()
    new_agent(conn)
    with pytest.raises(Conflict):
        new_agent(conn)
    conn.rollback()
    with pytest.raises(NotFound):
        revoke_agent(conn, "agt-404", now=T0)
    with pytest.raises(Conflict):
        create_org(conn, "clinic-1", "again")
