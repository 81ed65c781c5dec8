"""Issue 10, item 3: client-id takeover.

Client ids were not bound to accounts and ingest's default id is ``vigil-ingest-1``: an agent
connecting with it kicked ingest off the broker, and with ``clean_start=0`` inherited ingest's
session and its queued envelopes (ingest then came back to "session present" and no alarm fired).
An agent could likewise kick any other agent.

Now every account may use its own client id only (against the broker ``vigil broker render``
configured): the attempts are refused at CONNECT and the victims keep their sessions. Two clients
that *do* share an id (a cloned agent, two ingest workers given one ``--client-id``) are noticed on
Mosquitto 2.0.11, which closes the displaced connection without DISCONNECT 0x8E: the real edge agent
raises its ``client_id_takeover`` alarm and ingest counts and logs the takeover.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
import pytest_asyncio
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from typer.testing import CliRunner

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.cli import app as edge_app
from edge_agent.config_file import read_config, write_config
from edge_agent.emulation import EmulatedRadio, VirtualAir
from ingest.service import IngestService
from rpm_core.enrollment import EnrollmentBundle
from rpm_core.keystore import load_server_keys
from tests.e2e.conftest import until
from tests.support.agents import readings
from tests.support.platform import HOST, RenderedPlatform, start_platform, wait_for
from vigil_testkit.agent_harness import Enrolled
from vigil_testkit.broker import tls_context

NOT_AUTHORIZED = 0x87
QUEUED = 10


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path)
    try:
        yield p
    finally:
        p.stop()


def ingest(platform: RenderedPlatform, client_id: str = "vigil-ingest-1") -> IngestService:
    svc = IngestService(
        platform.ingest_settings(mqtt_client_id=client_id),
        keyring=load_server_keys(platform.key_dir),
        mqtt_password=platform.ingest_password(client_id),
    )
    svc.start()
    return svc


def stored(db: str, agent: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE agent_id = %s", (agent,)).fetchone()
        return int(row[0]) if row else 0


class Impostor:
    """An MQTT client with one agent's credentials and someone else's client id."""

    def __init__(self, platform: RenderedPlatform, bundle: EnrollmentBundle, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set_context(tls_context(platform.layout.ca))
        self.client.username_pw_set(bundle.agent_id, bundle.mqtt_password.get_secret_value())
        self.port = platform.port
        self.connack: list[tuple[int, bool]] = []
        self.delivered: list[str] = []
        self.client.on_connect = lambda _c, _u, flags, reason, _p: self.connack.append(
            (reason.value, bool(flags.session_present))
        )
        self.client.on_message = lambda _c, _u, msg: self.delivered.append(msg.topic)

    def attempt(self, *, clean_start: bool) -> tuple[int, bool]:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(HOST, self.port, clean_start=clean_start, properties=props)
        self.client.loop_start()
        try:
            return wait_for(lambda: self.connack and self.connack[-1], 10, "CONNACK")
        finally:
            self.client.disconnect()
            self.client.loop_stop()


def test_an_agent_cannot_take_ingests_client_id_session_or_backlog(platform: RenderedPlatform) -> None:
    attacker = platform.create_agent("agt-attacker")
    victim = platform.sim_agent(platform.create_agent("agt-victim"))
    svc = ingest(platform)
    try:
        wait_for(lambda: svc.connected, 10, "ingest connected")
        victim.connect()
        victim.register_until_receipt()
        # While ingest runs: refused, and ingest is not kicked (the broker log would say so).
        assert Impostor(platform, attacker, "vigil-ingest-1").attempt(clean_start=True)[0] == NOT_AUTHORIZED
        topic, data = victim.sealed(readings("agt-victim", 1, 1))
        assert victim.publish_raw(topic, data) == 0
        wait_for(lambda: stored(platform.db, "agt-victim") == 1, 20, "a reading stored after the attempt")
        assert svc.connected
    finally:
        svc.stop(timeout=5)
    # Ingest away: its persistent session queues the victim's envelopes.
    for seq in range(2, 2 + QUEUED):
        topic, data = victim.sealed(readings("agt-victim", seq, 1))
        assert victim.publish_raw(topic, data) == 0
    impostor = Impostor(platform, attacker, "vigil-ingest-1")
    assert impostor.attempt(clean_start=False) == (NOT_AUTHORIZED, False)
    assert impostor.delivered == []
    log = platform.broker.log()
    assert "Client vigil-ingest-1 already connected" not in log
    # Ingest comes back to its own session, backlog included.
    back = ingest(platform)
    try:
        wait_for(lambda: back.connected, 10, "ingest reconnected")
        assert back.last_session_present is True
        wait_for(lambda: stored(platform.db, "agt-victim") == 1 + QUEUED, 20, "the queued readings stored")
    finally:
        back.stop(timeout=5)


@pytest.mark.parametrize("stolen", ["agt-victim", "vigil-ingest-2", "vigil-admin", "agt-attacker-2"])
def test_an_agent_cannot_use_another_accounts_client_id(platform: RenderedPlatform, stolen: str) -> None:
    attacker = platform.create_agent("agt-attacker")
    victim = platform.sim_agent(platform.create_agent("agt-victim"))
    victim.connect()
    for clean_start in (True, False):
        assert Impostor(platform, attacker, stolen).attempt(clean_start=clean_start)[0] == NOT_AUTHORIZED
    # The victim was not displaced: still connected, its publishes still acknowledged (0x10: no
    # subscriber, ingest does not run here).
    topic, data = victim.sealed(readings("agt-victim", 1, 1))
    assert victim.publish_raw(topic, data) == 0x10
    assert victim.client.is_connected()
    assert f"Client {stolen} already connected" not in platform.broker.log()


# -- twins that do share an id: the alarm -----------------------------------------------------------


@pytest.fixture
def enrolled(platform: RenderedPlatform, tmp_path: Path) -> Enrolled:
    """One agent enrolled with the real `vigil edge enroll`, short reconnect backoff."""
    bundle_path = tmp_path / "twin.bundle.json"
    platform.vigil(
        "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", "agt-twin", "--out", str(bundle_path)
    )
    directory, state_dir = tmp_path / "edge", tmp_path / "edge-state"
    result = CliRunner().invoke(
        edge_app,
        ["enroll", "--bundle", str(bundle_path), "--dir", str(directory), "--state-dir", str(state_dir),
         "--time-zone", "UTC", "--owner", getpass.getuser()],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = directory / "agent.toml"
    write_config(config, {**read_config(config), "mqtt_backoff_cap_s": 2.0, "registration_retry_s": 5.0}, ())
    return Enrolled(config, EnrollmentBundle.read(bundle_path), directory, state_dir)


@pytest_asyncio.fixture
async def radio() -> AsyncIterator[Radio]:
    central = await EmulatedRadio.open(VirtualAir())  # no devices: the uplink is what is under test
    try:
        yield Radio(central.scanner_backend, central.client_backend)
    finally:
        await central.close()


@pytest.mark.asyncio
async def test_catalogue_22_two_agents_with_one_identity_log_the_takeover_and_the_alarm_reaches_the_server(
    platform: RenderedPlatform, enrolled: Enrolled, radio: Radio, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two real agents (a cloned SD card) on the real broker: nothing here raises or latches the
    alarm but the agents themselves, from what the broker does to their connections."""
    caplog.set_level(logging.ERROR, logger="edge_agent.uplink")
    twin_state = tmp_path / "twin-state"
    shutil.copytree(enrolled.state_dir, twin_state)  # the cloned SD card
    svc = await asyncio.to_thread(ingest, platform)  # so the statuses reach the server
    agents = await asyncio.to_thread(
        lambda: [
            Agent(enrolled.settings(), enrolled.identity(), radio=radio),
            Agent(enrolled.settings(state_dir=twin_state), enrolled.identity(), radio=radio),
        ]
    )
    assert all(a.state is None for a in agents)  # no state (and no alarm) before they run

    def server_alarms() -> list[str]:
        with psycopg.connect(platform.db) as conn:
            row = conn.execute("SELECT alarms FROM agent_status WHERE agent_id = 'agt-twin'").fetchone()
        return list(row[0]) if row else []

    stop = asyncio.Event()
    tasks = [asyncio.create_task(a.run(stop)) for a in agents]
    try:
        async with asyncio.timeout(60):
            while not all(a.state is not None and "client_id_takeover" in a.state.alarms for a in agents):
                for task in tasks:
                    if task.done():
                        task.result()
                        raise AssertionError("an agent stopped")
                await asyncio.sleep(0.05)
        await until(lambda: "client_id_takeover" in server_alarms(), "the alarm in the server's agent status")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await asyncio.to_thread(svc.stop, 5)
    logged = [r for r in caplog.records if "another client connected with this agent's client id" in r.getMessage()]
    assert logged  # the takeover is logged (with the agent id, no PHI)
    assert all("agt-twin" in r.getMessage() for r in logged)


def test_two_ingest_workers_with_one_client_id_count_and_log_the_takeover(
    platform: RenderedPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ingest.service")
    first = ingest(platform)
    second = None
    try:
        wait_for(lambda: first.connected, 10, "first worker connected")
        second = ingest(platform)  # the same --client-id by mistake
        workers = (first, second)

        def takeovers(svc: IngestService) -> float:
            return svc.metrics.registry.get_sample_value("vigil_ingest_client_id_takeovers_total") or 0.0

        wait_for(lambda: all(takeovers(w) >= 1 for w in workers), 60, "both workers counting the takeover")
        assert "CLIENT ID TAKEOVER" in caplog.text
        assert "vigil-ingest-1" in caplog.text
    finally:
        first.stop(timeout=5)
        if second is not None:
            second.stop(timeout=5)
