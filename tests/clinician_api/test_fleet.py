"""The fleet over HTTP: agents with last contact, outbox depth, version, devices and gaps; one-time
enrolment tokens exchanged once for a bundle (then refused, audited, throttled); revocation and
reassignment through the real provisioning (vigil_cli's, as `vigil api` wires it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from broker_config.ca import load_or_create_ca
from clinician_api.app import create_app
from provisioning.settings import ProvisioningSettings
from rpm_core.enrollment import EnrollmentBundle
from rpm_core.keystore import create_server_key
from store.fleet import AgentStatusRow, record_statuses
from tests.clinician_api.conftest import _client
from tests.clinician_api.world import T0, audit_head, audit_rows, sign_in
from vigil_cli.api_provisioner import ApiProvisioner

pytestmark = pytest.mark.asyncio
API = "/api/v1"


@pytest.fixture
def provisioner(tmp_path: Path, world) -> ApiProvisioner:
    keys = tmp_path / "keys"
    create_server_key(keys)
    load_or_create_ca(keys, now=datetime.now(UTC))
    return ApiProvisioner(ProvisioningSettings(database_url=world.url, key_dir=keys, broker_dir=tmp_path / "broker"))


@pytest_asyncio.fixture
async def app(settings, clock, provisioner):
    application = create_app(settings, clock=clock, provisioner=provisioner)
    async with application.router.lifespan_context(application):
        yield application


def _agent(url: str, agent: str, patient: str, org: str = "o1") -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO agents (agent_id, org_id, last_seen_at) VALUES (%s, %s, %s)", (agent, org, T0))
        conn.execute(
            "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) VALUES (%s, %s, %s, %s)",
            (agent, org, patient, T0 - timedelta(days=9)),
        )
        conn.execute(
            "INSERT INTO devices (device_id, org_id, agent_id, profile, battery_pct, last_seen_at) "
            "VALUES (%s, %s, %s, 'weight_scale', 12, %s)",
            (f"dev-{agent}", org, agent, T0),
        )
        conn.execute(
            "INSERT INTO agent_gaps (agent_id, org_id, first_seq, last_seq) VALUES (%s, %s, 10, 14)", (agent, org)
        )


def _status(agent: str, at: datetime, depth: int, version: str = "0.2.0") -> AgentStatusRow:
    return AgentStatusRow(agent, "o1", at, True, version, depth, at - timedelta(minutes=5), 9, ("clock_skew",))


async def test_the_fleet_shows_contact_outbox_version_devices_and_gaps(client, world) -> None:
    _agent(world.url, "agt-a", "p1")
    _agent(world.url, "agt-q", "q1", org="o2")
    with psycopg.connect(world.url, autocommit=True) as conn:
        # Statuses committed out of order: the newest the agent sent wins.
        record_statuses(conn, [_status("agt-a", T0, 3)], now=T0)
        record_statuses(conn, [_status("agt-a", T0 - timedelta(minutes=1), 99, "0.1.0")], now=T0)
    await sign_in(client, world["a1"], T0)
    before = audit_head(world.url)
    page = (await client.get(f"{API}/admin/agents")).json()
    (agent,) = page["items"]  # o2's agent is not listed
    assert (agent["agent_id"], agent["patient_id"], agent["outbox_depth"], agent["agent_version"]) == (
        "agt-a",
        "p1",
        3,
        "0.2.0",
    )
    assert agent["alarms"] == ["clock_skew"]
    assert agent["gaps"]["readings"] == 5
    assert [(d["device_id"], d["battery_pct"]) for d in agent["devices"]] == [("dev-agt-a", 12)]
    rows = audit_rows(world.url, since=before)
    assert [r[1:3] for r in rows] == [("fleet.read", "success")]
    await sign_in(client, world["c1"], T0)
    assert (await client.get(f"{API}/admin/agents")).status_code == 403


async def test_a_token_is_exchanged_once_for_a_bundle(client, world, new_client) -> None:
    await sign_in(client, world["a1"], T0)
    r = await client.post(f"{API}/admin/enrolment-tokens", json={"patient_id": "p2", "ttl_minutes": 30})
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["token"].startswith("vgle1.")
    assert issued["command"] == f"vigil edge enroll --url http://localhost:8000 --token {issued['token']}"
    async with new_client("192.0.2.7") as pi:  # the Pi: no session at all
        before = audit_head(world.url)
        got = await pi.post(f"{API}/enrol", json={"token": issued["token"]})
        assert got.status_code == 200, got.text
        bundle = EnrollmentBundle.from_json(json.dumps(got.json()["bundle"]))  # as the Pi reads it
        assert (bundle.org, bundle.agent_id) == ("o1", got.json()["agent_id"])
        assert bundle.mqtt_password.get_secret_value()
        assert [(r[1], r[2], r[4]) for r in audit_rows(world.url, since=before)] == [
            ("enrolment.exchange", "success", "p2")
        ]
        again = await pi.post(f"{API}/enrol", json={"token": issued["token"]})
        assert (again.status_code, again.json()["code"]) == (401, "invalid_token")
    with psycopg.connect(world.url) as conn:
        status, patient = conn.execute(
            "SELECT g.status, a.patient_id FROM agents g JOIN agent_assignments a USING (agent_id) WHERE agent_id = %s",
            (bundle.agent_id,),
        ).fetchone()
        reason = conn.execute(
            "SELECT reason FROM audit_log WHERE action = 'enrolment.exchange' ORDER BY audit_id DESC LIMIT 1"
        ).fetchone()[0]
    assert (status, patient, reason) == ("pending", "p2", "used")
    listed = (await client.get(f"{API}/admin/enrolment-tokens")).json()
    assert [(t["patient_id"], t["agent_id"]) for t in listed] == [("p2", bundle.agent_id)]


async def test_expired_forged_and_foreign_tokens_are_refused(client, world, clock, new_client) -> None:
    await sign_in(client, world["a1"], T0)
    issued = (await client.post(f"{API}/admin/enrolment-tokens", json={"patient_id": "p1", "ttl_minutes": 5})).json()
    before = audit_head(world.url)
    foreign = await client.post(f"{API}/admin/enrolment-tokens", json={"patient_id": "q1"})
    assert foreign.status_code == 404
    assert [(r[2], r[4]) for r in audit_rows(world.url, since=before)] == [("denied", "q1")]
    clock.advance(6 * 60)
    async with new_client("192.0.2.8") as pi:
        late = await pi.post(f"{API}/enrol", json={"token": issued["token"]})
        assert (late.status_code, late.json()["code"]) == (401, "invalid_token")
        secret = issued["token"].split(".")[1]
        for forged in (
            f"vgle1.{secret[:-1]}{'B' if secret[-1] == 'A' else 'A'}.",
            "vgle1......",
            "vgle2." + secret + ".",
            "x" * 40,
        ):
            assert (await pi.post(f"{API}/enrol", json={"token": forged})).status_code == 401
        # Guessing goes nowhere: after 20 refusals the address is locked out.
        codes = [(await pi.post(f"{API}/enrol", json={"token": f"vgle1.{'a' * 43}."})).status_code for _ in range(20)]
        assert codes[-1] == 429
        assert set(codes[:14]) == {401}


async def test_revoke_and_reassign_through_provisioning(client, world) -> None:
    _agent(world.url, "agt-r", "p1")
    await sign_in(client, world["a2"], T0)  # another organisation's admin
    before = audit_head(world.url)
    assert (await client.post(f"{API}/admin/agents/agt-r/revoke", json={})).status_code == 404
    assert [r[2] for r in audit_rows(world.url, since=before)] == ["denied"]
    await sign_in(client, world["a1"], T0)
    moved = await client.post(f"{API}/admin/agents/agt-r/assign", json={"patient_id": "p2"})
    assert (moved.status_code, moved.json()["patient_id"]) == (200, "p2")
    assert (await client.post(f"{API}/admin/agents/agt-r/assign", json={"patient_id": "q1"})).status_code == 404
    r = await client.post(f"{API}/admin/agents/agt-r/revoke", json={})
    assert (r.status_code, r.json()["status"]) == (200, "revoked")
    with psycopg.connect(world.url) as conn:
        assert conn.execute("SELECT status FROM agents WHERE agent_id = 'agt-r'").fetchone()[0] == "revoked"


async def test_without_provisioning_the_routes_say_so(settings, clock, world) -> None:
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application), _client(application) as c:
        await sign_in(c, world["a1"], T0)
        token = (await c.post(f"{API}/admin/enrolment-tokens", json={"patient_id": "p1"})).json()["token"]
        r = await c.post(f"{API}/enrol", json={"token": token})
        assert (r.status_code, r.json()["code"]) == (503, "unavailable")


async def test_a_provisioning_failure_is_a_problem_and_the_token_stays_usable(
    client, world, provisioner, tmp_path, new_client
) -> None:
    await sign_in(client, world["a1"], T0)
    token = (await client.post(f"{API}/admin/enrolment-tokens", json={"patient_id": "p1"})).json()["token"]
    lock = Path(provisioner.settings.key_dir) / "mqtt" / "broker.lock"
    lock.mkdir(parents=True)  # the broker lock cannot be opened: nothing can be changed
    async with new_client("192.0.2.9") as pi:
        failed = await pi.post(f"{API}/enrol", json={"token": token})
        assert failed.headers["content-type"].startswith("application/problem+json"), (failed.status_code, failed.text)
        assert failed.status_code in (500, 503), failed.text
        assert str(tmp_path) not in failed.text  # the server's paths are not the caller's business
        with psycopg.connect(world.url) as conn:
            assert conn.execute("SELECT count(*) FROM agents WHERE org_id = 'o1'").fetchone()[0] == 0
        assert failed.json()["code"] == "file_access"
        lock.rmdir()
        again = await pi.post(f"{API}/enrol", json={"token": token})
        assert again.status_code == 200, again.text


async def test_provisioning_itself_refuses_another_organisations_agent(world, provisioner) -> None:
    from provisioning.errors import NotFound as ProvisioningNotFound

    _agent(world.url, "agt-x", "p1")
    with pytest.raises(ProvisioningNotFound):
        provisioner.revoke_agent("agt-x", org_id="o2")
    with psycopg.connect(world.url) as conn:
        assert conn.execute("SELECT status FROM agents WHERE agent_id = 'agt-x'").fetchone()[0] != "revoked"
