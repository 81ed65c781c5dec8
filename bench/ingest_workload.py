"""The ingest benchmark's workload, shared by its processes: agent credentials, the readings and
sealed envelopes simulated agents send, per-process CPU and memory from ``/proc``, and the naive
baseline consumer.

Readings are a heart-rate stream: agent ``A``'s reading number ``s`` (its sequence number, from 1,
continuing across scenarios) was measured at ``T0 + s`` seconds, so every (agent, seq) is one
distinct row. Envelopes are real ``rpm_core`` envelopes (signed by the agent's Ed25519 key,
encrypted to the server), sealed before a scenario's clock starts: the agents' sealing cost is
the Pi's, not the server's, and the publishers' CPU in the figures is their MQTT work only.
"""

from __future__ import annotations

import os
import resource
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

__all__ = [
    "T0",
    "AgentCreds",
    "cpu_seconds",
    "machine_busy_seconds",
    "naive_consumer",
    "raise_nofile",
    "rss_mb",
    "seal_envelopes",
]

T0: Final = datetime(2026, 1, 1, tzinfo=UTC)
DEVICE: Final = "F0:12:34:56:78:9A"
_TICK: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class AgentCreds:
    org: str
    agent: str
    password: str
    sign_pem: bytes
    kex_pem: bytes


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE to ``wanted`` (the hard limit too when allowed: root);
    returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError):
            wanted = hard
        else:
            return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (threads included) from /proc/<pid>/stat; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """A memory figure of ``/proc/PID/status`` in MiB (``None`` once the process is gone).

    ``VmRSS`` is everything resident; ``RssAnon`` is the process's own heap and stacks, without the
    shared memory it has touched (a PostgreSQL backend's VmRSS grows towards ``shared_buffers`` as it
    reads pages: that is the server's cache, not the backend's memory)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent not idle (all processes, everyone's), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK


def seal_envelopes(
    creds: AgentCreds, keys: Any, server: Any, *, first_seq: int, per_envelope: int, count: int
) -> list[tuple[int, bytes]]:
    """``count`` sealed envelopes of ``per_envelope`` readings from ``first_seq`` on: (last seq, bytes)."""
    from rpm_core.envelope import ReadingBatch, seal_batch
    from rpm_core.ids import agent_id, org_id
    from rpm_core.reading import Reading

    out = []
    org, agent = org_id(creds.org), agent_id(creds.agent)
    seq = first_seq
    for _ in range(count):
        readings = tuple(
            Reading(
                agent_id=creds.agent,
                device_id=DEVICE,
                seq=s,
                metric="heart_rate",
                value=60.0 + s % 40,
                measured_at=T0 + timedelta(seconds=s),
                flags=frozenset({"contact"}),
            )
            for s in range(seq, seq + per_envelope)
        )
        _, data = seal_batch(ReadingBatch(org, agent, datetime.now(UTC), readings), agent=keys, server=server)
        seq += per_envelope
        out.append((seq - 1, data))
    return out


def naive_consumer(
    url: str, host: str, port: int, ca: str, username: str, password: str, key_dir: str, ready: Any
) -> None:
    """The baseline: auto-ack after each message, one INSERT per reading, one COMMIT per message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from ingest.opener import EnvelopeOpener
    from rpm_core.keys import AgentPublicKeys
    from rpm_core.keystore import load_server_keys
    from rpm_core.topics import Topic, ingest_subscription
    from store import bench_support
    from store.connection import connect

    opener = EnvelopeOpener(load_server_keys(Path(key_dir)).by_kid)
    conn = connect(url, application_name="vigil-naive")
    agents: dict[str, tuple[AgentPublicKeys, str]] = {}
    for agent, sign, kex, patient in bench_support.agent_keys(conn):
        agents[agent] = (AgentPublicKeys(sign=sign, kex=kex), patient)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        topic = Topic.parse(msg.topic)
        keys, patient = agents[topic.agent]
        batch = opener.open_batch(bytes(msg.payload), topic=topic, agent=keys)
        with conn.transaction():  # one COMMIT per message
            for r in batch.readings:
                flags = sorted(r.flags)
                row = (r.measured_at, topic.org, patient, topic.agent, r.device_id, r.metric, r.value, r.seq, flags)
                bench_support.insert_reading_naively(conn, row)

    ctx = ssl.create_default_context(cafile=ca)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.username_pw_set(username, password)
    c.on_connect = lambda cl, *_a: cl.subscribe(ingest_subscription(), qos=1)
    c.on_subscribe = lambda *_a: ready.set()
    c.on_message = on_message
    c.connect(host, port)
    c.loop_forever()
