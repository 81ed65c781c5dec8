"""Test harness for the agent end to end: the project's TLS broker, a real enrollment, and a stand-in
server that opens envelopes and signs receipts.

``ReceiptServer`` is the test subscriber of the acceptance criteria (not the ingest service): it
subscribes as the ingest account to every agent's uplink, accepts registrations (token checked),
opens reading envelopes and statuses with the agent's registered keys, keeps every reading by
sequence number (a number that comes back with different content is recorded as reuse), and
publishes a signed receipt whose ``through`` is the contiguous high-water mark of what it holds
(gaps the agent declared included). It runs on paho's thread; read its state under ``lock`` or
through the helpers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.accounts import INGEST_USERNAME
from edge_agent.enroll import enroll
from edge_agent.identity import AgentIdentity
from edge_agent.settings import PairedDevice, load_edge_settings
from ingest.opener import EnvelopeOpener
from rpm_core.clock import SystemClock
from rpm_core.downlink import Receipt, sign_receipt
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, ServerKeyInfo, new_token
from rpm_core.errors import MalformedEnvelope
from rpm_core.ids import AgentId, OrgId, agent_id, org_id
from rpm_core.keys import AgentPublicKeys, ServerKey
from rpm_core.reading import Reading
from rpm_core.status import AgentStatus
from rpm_core.topics import Kind, Topic, ingest_subscription
from vigil_testkit.broker import SecureBroker, tls_context

ORG = org_id("clinic-1")
SERVER_NAME = "localhost"  # in the broker certificate; the agent dials 127.0.0.1


def make_bundle(broker: SecureBroker, server: ServerKey, agent: str, *, org: OrgId = ORG) -> EnrollmentBundle:
    password = broker.add_agent(org, agent)
    return EnrollmentBundle(
        org=org,
        agent_id=agent_id(agent),
        broker=BrokerEndpoint(
            host="127.0.0.1", port=broker.port, server_name=SERVER_NAME, ca_pem=broker.layout.ca.read_text()
        ),
        mqtt_username=agent,
        mqtt_password=password,  # type: ignore[arg-type]
        enrollment_token=new_token(),  # type: ignore[arg-type]
        server_keys=(ServerKeyInfo.of(server.public()),),
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )


@dataclass
class Enrolled:
    config: Path
    bundle: EnrollmentBundle
    directory: Path
    state_dir: Path

    def settings(self, **overrides: Any) -> Any:
        return load_edge_settings(self.config, **overrides)

    def identity(self) -> AgentIdentity:
        return AgentIdentity.load(self.directory, org=self.bundle.org, agent=self.bundle.agent_id)


def enroll_agent(
    tmp: Path,
    broker: SecureBroker,
    server: ServerKey,
    agent: str = "agt-edge-1",
    devices: tuple[PairedDevice, ...] = (),
    **config: Any,
) -> Enrolled:
    """Run the real enrollment into ``tmp`` and append test settings to the written config."""
    bundle = make_bundle(broker, server, agent)
    bundle_file = tmp / "bundle.json"
    bundle_file.write_text(bundle.to_json())
    directory, state_dir = tmp / "etc", tmp / "state"
    result = enroll(bundle_file, directory=directory, state_dir=state_dir, clock=SystemClock(), time_zone="UTC")
    from edge_agent.config_file import read_config, write_config

    values = read_config(result.config)
    values.update(config)
    write_config(result.config, values, devices)
    return Enrolled(result.config, bundle, directory, state_dir)


@dataclass
class AgentRecord:
    keys: AgentPublicKeys
    readings: dict[int, Reading] = field(default_factory=dict)
    arrival: list[int] = field(default_factory=list)  # sequence numbers in first-arrival order
    gaps: set[tuple[int, int]] = field(default_factory=set)
    duplicates: int = 0
    reused: list[int] = field(default_factory=list)
    statuses: list[AgentStatus] = field(default_factory=list)
    envelopes: int = 0

    def through(self) -> int:
        covered = set(self.readings)
        for first, last in self.gaps:
            covered.update(range(first, last + 1))
        n = 0
        while n + 1 in covered:
            n += 1
        return n


class ReceiptServer:
    def __init__(self, broker: SecureBroker, server: ServerKey, tokens: dict[str, str]) -> None:
        self.server = server
        self.opener = EnvelopeOpener({server.kid: server})  # what ingest opens with
        self.tokens = tokens  # agent -> enrollment token
        self.agents: dict[str, AgentRecord] = {}
        self.receipts_enabled = True
        self.rejected: list[str] = []
        self.lock = threading.Lock()
        self._connected = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=INGEST_USERNAME, protocol=mqtt.MQTTv5)
        c.tls_set_context(tls_context(broker.layout.ca))
        c.username_pw_set(INGEST_USERNAME, broker.ingest_password)
        c.reconnect_delay_set(0.2, 1.0)  # the broker outage test restarts the broker
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        self._broker = broker

    def start(self) -> ReceiptServer:
        self.client.connect(SERVER_NAME, self._broker.port, keepalive=10)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("receipt server did not connect")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        client.subscribe(ingest_subscription(), qos=1)  # the only member of ingest's group
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        topic = Topic.parse(message.topic)
        try:
            with self.lock:
                self._handle(topic, bytes(message.payload))
        except Exception as exc:  # noqa: BLE001 - a test double records what it could not open
            self.rejected.append(f"{topic.kind}: {type(exc).__name__}: {exc}")

    def _handle(self, topic: Topic, data: bytes) -> None:
        opener = self.opener
        record = self.agents.get(topic.agent)
        if topic.kind is Kind.STATUS and record is None:
            reg = opener.open_registration(data, topic=topic)
            if reg.token != self.tokens.get(topic.agent):
                raise ValueError("bad enrollment token")
            self.agents[topic.agent] = AgentRecord(reg.keys)
            self._receipt(topic.org, topic.agent)
            return
        if record is None:
            raise ValueError("unregistered agent")
        if topic.kind is Kind.STATUS:
            try:
                record.statuses.append(opener.open_status(data, topic=topic, agent=record.keys))
            except MalformedEnvelope:
                # As ingest does: the same keys registering again (the agent crashed before it saw
                # the receipt) get another receipt.
                if opener.open_registration(data, topic=topic).keys != record.keys:
                    raise
                self._receipt(topic.org, topic.agent)
            return
        batch = opener.open_batch(data, topic=topic, agent=record.keys)
        record.envelopes += 1
        record.gaps.update((g.first, g.last) for g in batch.gaps)
        for r in batch.readings:
            known = record.readings.get(r.seq)
            if known is None:
                record.readings[r.seq] = r
                record.arrival.append(r.seq)
            elif known == r:
                record.duplicates += 1
            else:
                record.reused.append(r.seq)
        self._receipt(topic.org, topic.agent)

    def _receipt(self, org: OrgId, agent: AgentId) -> None:
        if self.receipts_enabled:
            through = self.agents[agent].through()
            receipt = Receipt(org, agent, through, datetime.now(UTC))
            self.client.publish(str(receipt.topic), sign_receipt(receipt, self.server), qos=1)

    def resend_receipt(self, agent: str) -> None:
        with self.lock:
            self._receipt(ORG, agent_id(agent))

    def record(self, agent: str) -> AgentRecord | None:
        with self.lock:
            return self.agents.get(agent)

    def readings(self, agent: str) -> list[Reading]:
        with self.lock:
            rec = self.agents.get(agent)
            return [] if rec is None else [rec.readings[s] for s in rec.arrival]


def wait_sync(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


async def wait_async(cond: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value
