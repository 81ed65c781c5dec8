"""Agents against the real database (no broker rendered: each change commits with a note saying so).

The broker's side of create and revoke is tests/provisioning/test_broker.py's.
"""

from __future__ import annotations

import psycopg
import pytest

from provisioning import agents
from provisioning.bundles import new_enrollment
from provisioning.errors import Conflict, DatabaseUnavailable, NotFound
from provisioning.settings import ProvisioningSettings
from rpm_core.clock import ManualClock
from tests.provisioning.conftest import T0
from vigil_testkit.net import free_port


def create(settings: ProvisioningSettings, clock: ManualClock, agent: str, org: str = "clinic-1", patient: str = "p1"):
    e = new_enrollment(settings, org_id=org, patient_id=patient, agent_id=agent, now=clock.now())
    return agents.create_agent(settings, e, clock=clock)


def rows(settings: ProvisioningSettings, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(sql).fetchall()


def test_create_assign_revoke_list(tenant: ProvisioningSettings, clock: ManualClock) -> None:
    created = create(tenant, clock, "agt-1")
    assert created.agent_id == "agt-1"
    assert "no rendered broker" in created.note
    assert created.bundle.agent_id == "agt-1"
    assert "mqtt_password" in created.bundle_json
    create(tenant, clock, "agt-9", org="clinic-2", patient="q1")
    clock.advance(60)
    agents.assign_agent(tenant, "agt-1", patient_id="p2", clock=clock)
    listed = agents.list_agents(tenant)
    assert [(a.org_id, a.agent_id, a.status, a.patient_id, a.last_seen_at) for a in listed] == [
        ("clinic-1", "agt-1", "pending", "p2", None),
        ("clinic-2", "agt-9", "pending", "q1", None),
    ]
    assert [a.agent_id for a in agents.list_agents(tenant, org_id="clinic-2")] == ["agt-9"]
    clock.advance(60)
    assert "no rendered broker" in agents.revoke_agent(tenant, "agt-1", clock=clock)
    assert agents.list_agents(tenant, org_id="clinic-1")[0].status == "revoked"
    assert rows(tenant, "SELECT valid_from, valid_to FROM agent_assignments WHERE agent_id = 'agt-1' ORDER BY 1") == [
        (T0, T0.replace(minute=1)),
        (T0.replace(minute=1), None),
    ]
    assert rows(tenant, "SELECT mqtt_password_hash, enrollment_token_sha256 FROM agents WHERE agent_id = 'agt-1'") == [
        (None, None)
    ]
    with pytest.raises(Conflict):
        agents.assign_agent(tenant, "agt-1", patient_id="p1", clock=clock)


def test_refusals_leave_nothing_behind(tenant: ProvisioningSettings, clock: ManualClock) -> None:
    with pytest.raises(NotFound) as no_org:
        create(tenant, clock, "agt-1", org="nowhere")
    assert (no_org.value.kind, no_org.value.key) == ("organisation", "nowhere")
    with pytest.raises(NotFound) as no_patient:
        create(tenant, clock, "agt-1", patient="nobody")
    assert no_patient.value.kind == "patient"
    with pytest.raises(NotFound):
        create(tenant, clock, "agt-1", patient="q1")  # another organisation's patient
    assert rows(tenant, "SELECT count(*) FROM agents") == [(0,)]
    create(tenant, clock, "agt-1")
    with pytest.raises(Conflict) as taken:
        create(tenant, clock, "agt-1")
    assert str(taken.value) == "agent 'agt-1': exists already"
    with pytest.raises(NotFound):
        agents.revoke_agent(tenant, "agt-404", clock=clock)
    assert rows(tenant, "SELECT count(*) FROM agents") == [(1,)]


def test_an_organisation_cannot_reach_another_ones_agents(tenant: ProvisioningSettings, clock: ManualClock) -> None:
    """The clinician API scopes each call to the caller's organisation: another one's agent looks absent."""
    create(tenant, clock, "agt-theirs", org="clinic-2", patient="q1")
    with pytest.raises(NotFound) as revoke:
        agents.revoke_agent(tenant, "agt-theirs", org_id="clinic-1", clock=clock)
    assert (revoke.value.kind, revoke.value.key) == ("agent", "agt-theirs")
    with pytest.raises(NotFound):
        agents.assign_agent(tenant, "agt-theirs", patient_id="p1", org_id="clinic-1", clock=clock)
    with pytest.raises(NotFound):  # unscoped, still only the agent's own organisation's patients
        agents.assign_agent(tenant, "agt-theirs", patient_id="p1", clock=clock)
    assert agents.list_agents(tenant, org_id="clinic-1") == []
    assert [(a.status, a.patient_id) for a in agents.list_agents(tenant)] == [("pending", "q1")]
    agents.revoke_agent(tenant, "agt-theirs", org_id="clinic-2", clock=clock)
    assert agents.list_agents(tenant)[0].status == "revoked"


def test_an_unreachable_database(tenant: ProvisioningSettings, clock: ManualClock) -> None:
    down = tenant.model_copy(update={"database_url": f"postgresql://127.0.0.1:{free_port()}/vigil"})
    enrollment = new_enrollment(down, org_id="clinic-1", patient_id="p1", agent_id="agt-1", now=clock.now())
    with pytest.raises(DatabaseUnavailable) as caught:
        agents.create_agent(down, enrollment, clock=clock)
    assert caught.value.sqlstate is None
    assert str(caught.value) == "cannot connect to the database: unreachable"
    with pytest.raises(DatabaseUnavailable):
        agents.list_agents(down)
