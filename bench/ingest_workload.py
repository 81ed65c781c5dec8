"""Processes of the ingest benchmark (bench/ingest.py): simulated agents and the naive baseline consumer.

Each runs in its own (spawned) process. A publisher owns a few agents, one MQTT/TLS connection per
agent (each agent may publish only under its own id), and publishes real sealed envelopes of 20
readings at a paced offered rate, either pre-sealed before the clock starts (throughput phases: the
agents' own sealing cost is not the server's) or sealed at publish time (latency phase: the
envelope's ``sent_at`` is the publish time). Latency = publish -> the signed receipt whose
``through`` covers the envelope's last sequence number (commit + receipt delivery).
"""

from __future__ import annotations

import contextlib
import os
import select
import ssl
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PER_ENVELOPE = 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class AgentCreds:
    org: str
    agent: str
    password: str
    sign_pem: bytes
    kex_pem: bytes


@dataclass
class PhaseSpec:
    name: str
    host: str
    port: int
    ca: str
    server_kex: bytes
    server_sign: bytes
    agents: list[AgentCreds]
    first_seq: dict[str, int]  # per agent: sequence numbers continue across phases
    envelopes_per_agent: int
    rate_readings_per_s: float  # this publisher's share
    duration_s: float
    presealed: bool
    wait_receipts: bool


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Pump:
    """All of a publisher's agent connections driven from one thread with select().

    paho's ``loop_start`` would run a thread per agent connection and wake it through a socket
    pair on every publish; without it, ``publish`` writes to the socket inline and this pump reads
    PUBACKs and receipts. The simulator's own CPU is then a small part of the machine.
    """

    def __init__(self) -> None:
        self.clients: list[mqtt.Client] = []
        self.acked: list[int] = []  # one entry per broker PUBACK
        self._misc_at = time.monotonic()

    def add(self, c: mqtt.Client) -> None:
        self.clients.append(c)

    def run(self, timeout: float) -> None:
        socks = {c.socket(): c for c in self.clients if c.socket() is not None}
        for sock, c in socks.items():  # TLS may hold decrypted bytes select() cannot see
            if getattr(sock, "pending", lambda: 0)():
                c.loop_read(1000)
        writers = [s for s, c in socks.items() if c.want_write()]
        readable, writable, _ = select.select(list(socks), writers, [], max(0.0, timeout))
        for sock in readable:
            socks[sock].loop_read(1000)
        for sock in writable:
            socks[sock].loop_write()
        if time.monotonic() - self._misc_at > 1.0:
            self._misc_at = time.monotonic()
            for c in self.clients:
                c.loop_misc()

    def until(self, deadline: float) -> None:
        while True:
            left = deadline - time.monotonic()
            self.run(left if left > 0 else 0.0)
            if left <= 0:
                return


def _client(spec: PhaseSpec, creds: AgentCreds, on_receipt: Any, pump: Pump) -> mqtt.Client:
    ctx = ssl.create_default_context(cafile=spec.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=creds.agent, protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.username_pw_set(creds.agent, creds.password)
    c.max_inflight_messages_set(500)
    c.max_queued_messages_set(0)
    ready: list[bool] = []

    def on_connect(cl: mqtt.Client, *_a: Any) -> None:
        cl.subscribe(f"vigil/v1/{creds.org}/{creds.agent}/down/receipts", qos=1)

    c.on_connect = on_connect
    c.on_subscribe = lambda *_a: ready.append(True)
    c.on_message = on_receipt
    c.on_publish = lambda *_a: pump.acked.append(1)
    c.connect(spec.host, spec.port, keepalive=60)
    pump.add(c)
    deadline = time.monotonic() + 30
    while not ready:
        if time.monotonic() > deadline:
            raise RuntimeError(f"agent {creds.agent} could not subscribe")
        pump.run(0.05)
    return c


def _seal(spec: PhaseSpec, creds: AgentCreds, keys: Any, server: Any, first: int) -> tuple[str, bytes]:
    from rpm_core.envelope import ReadingBatch, seal_batch
    from rpm_core.ids import agent_id, org_id
    from rpm_core.reading import Reading

    rs = tuple(
        Reading(
            agent_id=creds.agent,
            device_id="F0:12:34:56:78:9A",
            seq=s,
            metric="heart_rate",
            value=60.0 + s % 40,
            measured_at=T0 + timedelta(seconds=s),
            flags=frozenset({"contact"}),
        )
        for s in range(first, first + PER_ENVELOPE)
    )
    batch = ReadingBatch(org_id(creds.org), agent_id(creds.agent), datetime.now(UTC), rs)
    topic, data = seal_batch(batch, agent=keys, server=server)
    return str(topic), data


def publisher(spec: PhaseSpec, barrier: Any, results: Any) -> None:
    from rpm_core.downlink import verify_receipt
    from rpm_core.keys import AgentKeys, ServerPublicKey
    from rpm_core.topics import Topic

    server = ServerPublicKey(kex=spec.server_kex, sign=spec.server_sign)
    keys = {a.agent: AgentKeys.from_pem(a.sign_pem, a.kex_pem) for a in spec.agents}
    pending: dict[str, deque[tuple[int, float]]] = {a.agent: deque() for a in spec.agents}
    latencies: list[float] = []
    lock = contextlib.nullcontext()  # one thread: callbacks run inside pump.run()

    def on_receipt(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        topic = Topic.parse(msg.topic)
        through = verify_receipt(msg.payload, topic=topic, trusted=[server]).through
        with lock:
            q = pending[topic.agent]
            while q and q[0][0] <= through:
                latencies.append(now - q.popleft()[1])

    pump = Pump()
    clients = {a.agent: _client(spec, a, on_receipt, pump) for a in spec.agents}
    plan = [
        (a, spec.first_seq[a.agent] + i * PER_ENVELOPE) for i in range(spec.envelopes_per_agent) for a in spec.agents
    ]  # round-robin over agents, each agent's sequence increasing
    sealed = [_seal(spec, a, keys[a.agent], server, first) for a, first in plan] if spec.presealed else []
    barrier.wait()
    started = time.monotonic()
    cpu0 = cpu_seconds(os.getpid())
    interval = PER_ENVELOPE / spec.rate_readings_per_s
    published = 0
    for i, (a, first) in enumerate(plan):
        due = started + i * interval
        if due - started > spec.duration_s:
            break
        pump.until(due)
        topic, data = sealed[i] if spec.presealed else _seal(spec, a, keys[a.agent], server, first)
        with lock:
            pending[a.agent].append((first + PER_ENVELOPE - 1, time.monotonic()))
        clients[a.agent].publish(topic, data, qos=1)
        published += 1
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(os.getpid()) - cpu0
    # Every publish must reach the broker (paho holds what exceeds its in-flight window in memory;
    # disconnecting early would drop it), then, in the latency phase, every receipt must arrive.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pump.run(0.02)
        if len(pump.acked) >= published and not (spec.wait_receipts and any(pending.values())):
            break
    last = {a.agent: spec.first_seq[a.agent] - 1 for a in spec.agents}
    for a, first in plan[:published]:
        last[a.agent] = max(last[a.agent], first + PER_ENVELOPE - 1)
    for c in clients.values():
        c.disconnect()
    pump.run(0.1)
    results.put(
        {
            "published_envelopes": published,
            "last_seq": last,
            "elapsed_s": elapsed,
            "cpu_s": cpu,
            "latencies": latencies,
            "exhausted": published == len(plan),
        }
    )


def naive_consumer(
    url: str, host: str, port: int, ca: str, username: str, password: str, key_dir: str, ready: Any
) -> None:
    """The baseline: auto-ack after each message, one INSERT per reading, one COMMIT per message."""
    import psycopg

    from rpm_core.envelope import open_batch
    from rpm_core.keys import AgentPublicKeys
    from rpm_core.keystore import load_server_keys
    from rpm_core.topics import Topic, ingest_subscription

    server_keys = load_server_keys(__import__("pathlib").Path(key_dir)).by_kid
    conn = psycopg.connect(url, application_name="vigil-naive")
    agents: dict[str, tuple[AgentPublicKeys, str]] = {}
    for agent, sign, kex, patient in conn.execute(
        "SELECT a.agent_id, a.sign_public_key, a.kex_public_key, s.patient_id FROM agents a "
        "JOIN agent_assignments s ON s.agent_id = a.agent_id AND s.valid_to IS NULL WHERE a.status = 'active'"
    ):
        agents[agent] = (AgentPublicKeys(sign=bytes(sign), kex=bytes(kex)), patient)
    conn.commit()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        topic = Topic.parse(msg.topic)
        keys, patient = agents[topic.agent]
        batch = open_batch(msg.payload, topic=topic, server_keys=server_keys, agent=keys)
        for r in batch.readings:
            conn.execute(
                "INSERT INTO readings (time, org_id, patient_id, agent_id, device_id, metric, value, seq, flags) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    r.measured_at,
                    topic.org,
                    patient,
                    topic.agent,
                    r.device_id,
                    r.metric,
                    r.value,
                    r.seq,
                    sorted(r.flags),
                ),
            )
        conn.commit()

    ctx = ssl.create_default_context(cafile=ca)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)  # bound to its account
    c.tls_set_context(ctx)
    c.username_pw_set(username, password)
    c.on_connect = lambda cl, *_a: cl.subscribe(ingest_subscription(), qos=1)
    c.on_subscribe = lambda *_a: ready.set()
    c.on_message = on_message
    c.connect(host, port)
    c.loop_forever()
