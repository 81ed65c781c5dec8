"""Simulated agents for ingest tests: real rpm_core envelopes over paho/TLS, receipts verified.

The real edge agent (issue 3) is built in parallel; these agents use rpm_core directly
(``seal_registration``, ``seal_batch``, ``seal_status``) with the credentials ``vigil agents
create`` would have put in the bundle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from rpm_core.downlink import verify_receipt
from rpm_core.enrollment import (
    BrokerEndpoint,
    EnrollmentBundle,
    ServerKeyInfo,
    new_token,
    seal_registration,
    token_digest,
)
from rpm_core.envelope import ReadingBatch, seal_batch
from rpm_core.ids import AgentId, OrgId, agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.reading import Reading, SeqRange
from rpm_core.topics import Topic
from store.agents import create_agent
from store.patients import create_org, create_patient
from vigil_testkit.broker import SecureBroker, tls_context

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def ensure_patient(db: str, org: str = "clinic-1", patient: str = "p1") -> None:
    with psycopg.connect(db) as conn:
        if conn.execute("SELECT 1 FROM organizations WHERE org_id = %s", (org,)).fetchone() is None:
            create_org(conn, org, "Clinic")
        if conn.execute("SELECT 1 FROM patients WHERE patient_id = %s", (patient,)).fetchone() is None:
            create_patient(conn, org_id=org, patient_id=patient, display_name="Test Patient")


def readings(agent: str, first: int, n: int, *, metric: str = "heart_rate", value: float = 70.0) -> list[Reading]:
    return [
        Reading(
            agent_id=agent,
            device_id="F0:12:34:56:78:9A",
            seq=s,
            metric=metric,
            value=value,
            measured_at=T0 + timedelta(seconds=s),
            flags=frozenset({"contact"}),
        )
        for s in range(first, first + n)
    ]


@dataclass
class SimAgent:
    org: OrgId
    agent: AgentId
    password: str
    token: str
    keys: AgentKeys
    server: ServerKey
    broker: SecureBroker

    def __post_init__(self) -> None:
        self.receipts: list[int] = []
        self.acks: dict[int, int] = {}
        self._event = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.agent, protocol=mqtt.MQTTv5)
        c.tls_set_context(tls_context(self.broker.layout.ca))
        c.username_pw_set(self.agent, self.password)
        c.max_inflight_messages_set(1000)
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c

    def bundle(self) -> EnrollmentBundle:
        return EnrollmentBundle(
            org=self.org,
            agent_id=self.agent,
            broker=BrokerEndpoint(host="localhost", server_name="localhost", ca_pem=self.broker.ca.cert_pem().decode()),
            mqtt_username=self.agent,
            mqtt_password=self.password,
            enrollment_token=self.token,
            server_keys=(ServerKeyInfo.of(self.server.public()),),
            expires_at=T0 + timedelta(days=3650),
        )

    def connect(self) -> None:
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_a: c.subscribe(Topic.agent_filter(self.org, self.agent, "down"), qos=1)  # type: ignore[arg-type]
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        # Connected and subscribed to its downlink (the SUBACK is in): no receipt can miss it.
        assert subscribed.wait(10), "agent did not connect and subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c, _u, msg: mqtt.MQTTMessage) -> None:
        topic = Topic.parse(msg.topic)
        r = verify_receipt(msg.payload, topic=topic, trusted=[self.server.public()])
        self.receipts.append(r.through)
        self._event.set()

    def _on_publish(self, _c, _u, mid, reason, _p) -> None:
        self.acks[mid] = reason.value
        self._event.set()

    def publish_raw(self, topic: str | Topic, payload: bytes, *, wait: bool = True) -> int:
        info = self.client.publish(str(topic), payload, qos=1)
        if wait:
            deadline = time.monotonic() + 10
            while info.mid not in self.acks:
                assert time.monotonic() < deadline, "no PUBACK from the broker"
                self._event.wait(0.05)
                self._event.clear()
            return self.acks[info.mid]
        return 0

    def register(self) -> None:
        topic, data = seal_registration(self.bundle(), self.keys, agent_version="sim-0.1")
        self.publish_raw(topic, data)

    def register_until_receipt(self, timeout: float = 60) -> None:
        """As an agent does: repeat the registration until the first receipt says it is active."""
        deadline = time.monotonic() + timeout
        while not self.receipts:
            assert time.monotonic() < deadline, "registration never confirmed"
            self.register()
            self._event.wait(1.0)

    def sealed(self, rs: Sequence[Reading], gaps: Sequence[SeqRange] = ()) -> tuple[Topic, bytes]:
        batch = ReadingBatch(self.org, self.agent, datetime.now(UTC), tuple(rs), tuple(gaps))
        return seal_batch(batch, agent=self.keys, server=self.server.public())

    def send(self, rs: Sequence[Reading], gaps: Sequence[SeqRange] = (), *, wait: bool = True) -> bytes:
        topic, data = self.sealed(rs, gaps)
        self.publish_raw(topic, data, wait=wait)
        return data

    def wait_receipt(self, through: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not (self.receipts and max(self.receipts) >= through):
            assert time.monotonic() < deadline, f"no receipt through {through}; got {self.receipts[-5:]}"
            self._event.wait(0.05)
            self._event.clear()


def provision(db: str, broker: SecureBroker, server: ServerKey, agent: str, *, org: str = "clinic-1") -> SimAgent:
    """What `vigil agents create` does, for a test agent: DB row + broker account."""
    ensure_patient(db, org)
    token = new_token()
    password = broker.add_agent(org, agent)
    from broker_config.passwords import hash_password

    with psycopg.connect(db) as conn:
        create_agent(
            conn,
            org_id=org,
            agent_id=agent,
            patient_id="p1",
            password_hash=hash_password(password),
            token_sha256=token_digest(token),
            expires_at=datetime.now(UTC) + timedelta(days=1),
            now=datetime.now(UTC) - timedelta(days=3650),
        )
    return SimAgent(org_id(org), agent_id(agent), password, token, AgentKeys.generate(), server, broker)


def key_dir_with(server: ServerKey, path: Path) -> Path:
    from rpm_core.keystore import create_server_key

    create_server_key(path, server)
    return path
