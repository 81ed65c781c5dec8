"""A receipting server stand-in for long edge-agent runs (``bench.edge_agent --hours``).

Like the test harness's ``ReceiptServer`` it subscribes as the ingest account to every agent's
uplink, accepts a registration whose enrollment token matches, opens and verifies every envelope
and status with the agent's registered keys, and publishes a signed receipt whose ``through`` is
the contiguous high-water mark of what it holds (declared gaps included). Unlike it, it keeps no
reading: only ``through`` and the sequence numbers above it, so 24 simulated hours of readings
(345,600 at 4 readings/s) do not fill the benchmark's own memory.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.accounts import INGEST_USERNAME
from ingest.opener import EnvelopeOpener
from rpm_core.downlink import Receipt, sign_receipt
from rpm_core.errors import MalformedEnvelope, VigilError
from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import AgentPublicKeys, ServerKey
from rpm_core.status import AgentStatus
from rpm_core.topics import Kind, Topic, ingest_subscription

__all__ = ["AgentTally", "CountingReceipts"]


@dataclass
class AgentTally:
    keys: AgentPublicKeys
    through: int = 0
    above: set[int] = field(default_factory=set)  # held, above a hole
    readings: int = 0  # distinct readings received
    duplicates: int = 0
    envelopes: int = 0
    last_status: AgentStatus | None = None

    def add(self, first: int, last: int, *, gap: bool = False) -> None:
        for seq in range(first, last + 1):
            if seq <= self.through or seq in self.above:
                self.duplicates += 0 if gap else 1
                continue
            self.above.add(seq)
            self.readings += 0 if gap else 1
        while self.through + 1 in self.above:
            self.through += 1
            self.above.discard(self.through)


class CountingReceipts:
    def __init__(self, *, host: str, port: int, ca: Path, password: str, server: ServerKey, tokens: dict[str, str]):
        self.server = server
        self.opener = EnvelopeOpener({server.kid: server})
        self.tokens = tokens
        self.agents: dict[str, AgentTally] = {}
        self.rejected = 0
        self.lock = threading.Lock()
        self._connected = threading.Event()
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=INGEST_USERNAME, protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        c.username_pw_set(INGEST_USERNAME, password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        self._where = (host, port)

    def start(self) -> CountingReceipts:
        self.client.connect(*self._where, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("receipt server did not connect")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_a: Any) -> None:
        # The ingest account may subscribe only as a member of ingest's shared group (the broker's
        # grants): a plain subscription to every uplink is refused, and nothing would arrive.
        client.subscribe(ingest_subscription(), qos=1)
        self._connected.set()

    def tally(self, agent: str) -> AgentTally | None:
        with self.lock:
            return self.agents.get(agent)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = Topic.parse(message.topic)
            with self.lock:
                self._handle(topic, bytes(message.payload))
        except (VigilError, ValueError):
            self.rejected += 1

    def _handle(self, topic: Topic, data: bytes) -> None:
        opener = self.opener
        tally = self.agents.get(topic.agent)
        if topic.kind is Kind.STATUS and tally is None:
            reg = opener.open_registration(data, topic=topic)
            if reg.token != self.tokens.get(topic.agent):
                raise ValueError("bad enrollment token")
            self.agents[topic.agent] = AgentTally(reg.keys)
            self._receipt(topic.org, topic.agent)
            return
        if tally is None:
            raise ValueError("unregistered agent")
        if topic.kind is Kind.STATUS:
            try:
                tally.last_status = opener.open_status(data, topic=topic, agent=tally.keys)
            except MalformedEnvelope:
                if opener.open_registration(data, topic=topic).keys != tally.keys:
                    raise
                self._receipt(topic.org, topic.agent)
            return
        batch = opener.open_batch(data, topic=topic, agent=tally.keys)
        tally.envelopes += 1
        for g in batch.gaps:
            tally.add(g.first, g.last, gap=True)
        for r in batch.readings:
            tally.add(r.seq, r.seq)
        self._receipt(topic.org, topic.agent)

    def _receipt(self, org: OrgId, agent: AgentId) -> None:
        receipt = Receipt(org, agent, self.agents[agent].through, datetime.now(UTC))
        self.client.publish(str(receipt.topic), sign_receipt(receipt, self.server), qos=1)
