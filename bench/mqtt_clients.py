"""Which Python MQTT client should ingest consume with? paho-mqtt, aiomqtt and gmqtt on one workload.

The project's Mosquitto (TLS + dynamic security, :func:`vigil_testkit.broker.start_secure_broker`)
holds ``--messages`` QoS 1 PUBLISHes (default 20,000) of one real sealed one-reading envelope
(``rpm_core.envelope.seal_batch``) on an agent's uplink topic, queued in the consumer's persistent
session: the consumer subscribes once (``$share/ingest/vigil/v1/+/+/up/#``, MQTT v5, clean start
off, Session Expiry, Receive Maximum ``--receive-maximum``), leaves, a separate publisher process
(paho, the agent's account) publishes every message and waits for each PUBACK, then the consumer
comes back in its own process and drains its session the way ingest does:

* messages go to a batch (``--batch`` messages, or ``--batch-wait-ms`` after its first one);
* the batch is "committed" (``--commit-ms`` of sleep and ``--commit-cpu-us`` of CPU per message
  burnt in Python, both 0 by default: this measures the client, not the database), and only then
  are its messages acknowledged, in arrival order, with :class:`ingest.acks.AckTracker` doing the
  bookkeeping for the paho-based clients.

Clients:

``paho``     :class:`ingest.consumer.MqttConsumer` itself (paho's network thread, ``manual_ack=True``,
             a batch thread, ``ack_many``: one write per batch).
``aiomqtt``  aiomqtt 2.x (paho's packet code driven by the asyncio loop). aiomqtt has no manual
             acknowledgement: the bench turns paho's on through aiomqtt's private ``_client``
             and acknowledges the same way as ``paho`` (one write per batch).
``gmqtt``    gmqtt (asyncio native) with ``optimistic_acknowledgement=False``: its public way to
             hold a PUBACK is an ``async`` on_message; gmqtt runs it as one task per message and
             sends the PUBACK when it returns. Each task awaits its batch's commit. The bench
             records the packet ids as they arrive and as PUBACKs leave (two list appends per
             message, wrapped around gmqtt's handler) to check the order.

Per client: ``cpu_us_per_message`` (the consumer process's CPU time, every thread, from the first
message's arrival to the last acknowledgement handed to the client (``paho``, ``aiomqtt``) or sent
(``gmqtt``), over the messages); ``client_cpu_us_per_message``, the same less ``--commit-cpu-us``
(the client and the batching, GIL hand-offs included); ``messages_per_s`` over the same window;
``ack_in_order`` (the acknowledged packet ids equal the arrival order); ``redelivered`` (messages
the broker still had for the session when it was opened again afterwards: 0 means every PUBACK
reached the broker); ``broker_cpu_us_per_message`` (Mosquitto's CPU over the consumer's whole
connection: its session sent from the queue, the PUBACKs taken; ticks of 10 ms); and what the
client's API allows (``manual_ack``, ``ack_order``). A client that is not installed is skipped with
a note. The load average is printed before and after: the machine is shared.

Run: ``.venv/bin/python -m bench.mqtt_clients`` (needs ``mosquitto``; ``pip install aiomqtt gmqtt``
or the ``bench`` extra for the other two clients). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing as mp
import os
import ssl
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CLIENTS = ("paho", "aiomqtt", "gmqtt")
ORG = "bench"
AGENT = "agt-00001"
SESSION_EXPIRY_S = 3600
_PUBACK = struct.Struct("!BBH")
_PUBACK_COMMAND = 0x40

NOTES = {
    "paho": {
        "manual_ack": "yes: manual_ack=True, ack(mid) after COMMIT (what ingest does)",
        "ack_order": "yes: the caller sends them; ingest sends the committed prefix in arrival order",
    },
    "aiomqtt": {
        "manual_ack": "not in aiomqtt's API (2.x): only through its private _client (paho's manual_ack_set)",
        "ack_order": "as paho, through the same private client",
    },
    "gmqtt": {
        "manual_ack": (
            "yes: optimistic_acknowledgement=False and an async on_message; the PUBACK leaves when the "
            "message's task returns (one task per message), so it can wait for the COMMIT"
        ),
        "ack_order": (
            "not guaranteed by the API: PUBACKs leave in the order the per-message tasks finish; a task "
            "of an earlier connection that finishes after a reconnect sends its packet id on the new "
            "connection (where it may name another message)"
        ),
    },
}


@dataclass(frozen=True)
class Conf:
    host: str
    port: int
    ca_file: str
    client_id: str
    password: str
    messages: int
    batch: int
    batch_wait_s: float
    commit_s: float
    commit_cpu_us: float
    receive_maximum: int
    timeout_s: float


@dataclass
class Window:
    """Arrivals and acknowledgements of one consumer run (filled by the consumer, read at the end)."""

    arrived: list[int]
    acked: list[int]
    t0: float = 0.0
    cpu0: float = 0.0
    t1: float = 0.0
    cpu1: float = 0.0
    sessions: int = 0
    session_present: bool | None = None

    def first(self) -> None:
        if not self.arrived:
            self.t0, self.cpu0 = time.monotonic(), time.process_time()

    def maybe_last(self, n: int) -> bool:
        if len(self.acked) >= n and not self.t1:
            self.t1, self.cpu1 = time.monotonic(), time.process_time()
            return True
        return False

    def result(self, n: int, burned_us: float = 0.0) -> dict[str, Any]:
        dt, cpu = self.t1 - self.t0, self.cpu1 - self.cpu0
        done = bool(self.t1)
        return {
            "received": len(self.arrived),
            "acked": len(self.acked),
            "complete": done,
            "session_present": self.session_present,
            "connections": self.sessions,
            "window_s": round(dt, 3) if done else None,
            "messages_per_s": round(n / dt, 1) if done and dt > 0 else None,
            "cpu_us_per_message": round(1e6 * cpu / n, 1) if done else None,
            "client_cpu_us_per_message": round(1e6 * cpu / n - burned_us, 1) if done else None,
            "cpu_pct": round(100 * cpu / dt, 1) if done and dt > 0 else None,
            "ack_in_order": self.acked == self.arrived[: len(self.acked)],
        }


def burn(us: float) -> None:
    """The COMMIT's CPU: ``us`` microseconds of this thread's CPU in Python (holding the GIL)."""
    end = time.thread_time() + us / 1e6
    while time.thread_time() < end:
        pass


def _puback_bytes(mids: list[int]) -> bytes:
    return b"".join([_PUBACK.pack(_PUBACK_COMMAND, 2, mid) for mid in mids])


# -- paho: ingest's own consumer ----------------------------------------------------------------


def consume_paho(c: Conf) -> dict[str, Any]:
    from ingest.acks import AckToken, AckTracker
    from ingest.consumer import MqttConsumer
    from rpm_core.topics import ingest_subscription

    w = Window([], [])
    cond = threading.Condition()
    queue: deque[tuple[AckToken, float]] = deque()
    tracker = AckTracker()

    def on_message(_topic: str, _payload: bytes, mid: int, _qos: int) -> None:
        now = time.monotonic()
        with cond:
            w.first()
            w.arrived.append(mid)
            queue.append((tracker.arrived(mid, now), now))
            if len(queue) >= c.batch or len(queue) == 1:
                cond.notify_all()

    def on_connected(present: bool) -> None:
        with cond:
            tracker.connected()
            w.sessions += 1
            w.session_present = present

    consumer = MqttConsumer(
        host=c.host,
        port=c.port,
        ca_file=Path(c.ca_file),
        username=c.client_id,
        password=c.password,
        client_id=c.client_id,
        subscription=ingest_subscription(),
        session_expiry_s=SESSION_EXPIRY_S,
        receive_maximum=c.receive_maximum,
        keepalive_s=30,
        on_message=on_message,
        on_connected=on_connected,
    )
    consumer.start()
    deadline = time.monotonic() + c.timeout_s
    try:
        while time.monotonic() < deadline:
            with cond:  # ingest.service.IngestService._take
                first_at: float | None = None
                while len(queue) < c.batch:
                    now = time.monotonic()
                    if queue and first_at is None:
                        first_at = queue[0][1] + c.batch_wait_s
                    if (first_at is not None and now >= first_at) or now >= deadline:
                        break
                    cond.wait(0.5 if first_at is None else first_at - now)
                batch = [queue.popleft()[0] for _ in range(min(len(queue), c.batch))]
            if not batch:
                continue
            burn(c.commit_cpu_us * len(batch))
            if c.commit_s:
                time.sleep(c.commit_s)  # the COMMIT
            with cond:
                mids = tracker.done(batch)
            consumer.ack_many(mids)
            w.acked.extend(mids)
            if w.maybe_last(c.messages):
                break
        time.sleep(0.5)  # let the last PUBACKs leave
    finally:
        consumer.stop()
    return w.result(c.messages, c.commit_cpu_us)


# -- asyncio batching shared by aiomqtt and gmqtt -----------------------------------------------


class AsyncBatcher:
    """``IngestService._take`` for one event loop: up to ``batch`` items, or ``wait_s`` after the first."""

    def __init__(self, batch: int, wait_s: float) -> None:
        self.batch, self.wait_s = batch, wait_s
        self.items: deque[tuple[Any, float]] = deque()
        self.wake = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append((item, time.monotonic()))
        if len(self.items) == 1 or len(self.items) >= self.batch:
            self.wake.set()

    async def take(self) -> list[Any]:
        while not self.items:
            self.wake.clear()
            await self.wake.wait()
        while len(self.items) < self.batch:
            left = self.items[0][1] + self.wait_s - time.monotonic()
            if left <= 0:
                break
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), left)
        return [self.items.popleft()[0] for _ in range(min(len(self.items), self.batch))]


def _tls(ca_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# -- aiomqtt ------------------------------------------------------------------------------------


async def _aiomqtt(c: Conf) -> dict[str, Any]:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from ingest.acks import AckToken, AckTracker
    from rpm_core.topics import ingest_subscription

    w = Window([], [])
    tracker = AckTracker()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = c.receive_maximum
    client = aiomqtt.Client(
        c.host,
        c.port,
        username=c.client_id,
        password=c.password,
        identifier=c.client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=props,
        tls_context=_tls(c.ca_file),
        keepalive=30,
    )
    paho = client._client  # aiomqtt has no manual acknowledgement of its own
    paho.manual_ack_set(True)
    aiomqtt_on_connect = paho.on_connect

    def on_connect(cl: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
        w.session_present = bool(flags.session_present)
        aiomqtt_on_connect(cl, ud, flags, rc, props)

    paho.on_connect = on_connect
    batcher = AsyncBatcher(c.batch, c.batch_wait_s)

    async def commit_loop() -> None:
        while not w.t1:
            batch: list[AckToken] = await batcher.take()
            burn(c.commit_cpu_us * len(batch))
            if c.commit_s:
                await asyncio.sleep(c.commit_s)
            mids = tracker.done(batch)
            if len(mids) > 1:  # as MqttConsumer.ack_many: one write for the batch
                paho._packet_queue(_PUBACK_COMMAND, _puback_bytes(mids), 0, 0)
            elif mids:
                paho.ack(mids[0], 1)
            w.acked.extend(mids)
            w.maybe_last(c.messages)

    async with client:
        tracker.connected()
        w.sessions += 1
        await client.subscribe(ingest_subscription(), qos=1)
        committer = asyncio.create_task(commit_loop())

        async def read() -> None:
            async for message in client.messages:
                now = time.monotonic()
                w.first()
                w.arrived.append(message.mid)
                batcher.add(tracker.arrived(message.mid, now))

        reader = asyncio.create_task(read())
        try:
            await asyncio.wait_for(committer, c.timeout_s)
            await asyncio.sleep(0.5)  # let the last PUBACKs leave
        finally:
            reader.cancel()
            committer.cancel()
    return w.result(c.messages, c.commit_cpu_us)


def consume_aiomqtt(c: Conf) -> dict[str, Any]:
    return asyncio.run(_aiomqtt(c))


# -- gmqtt --------------------------------------------------------------------------------------


async def _gmqtt(c: Conf) -> dict[str, Any]:
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv50

    from rpm_core.topics import ingest_subscription

    w = Window([], [])
    batcher = AsyncBatcher(c.batch, c.batch_wait_s)
    connected, finished = asyncio.Event(), asyncio.Event()
    client = gmqtt.Client(
        c.client_id,
        clean_session=False,
        optimistic_acknowledgement=False,
        session_expiry_interval=SESSION_EXPIRY_S,
        receive_maximum=c.receive_maximum,
    )
    client.set_auth_credentials(c.client_id, c.password)
    handler = client._package_handler  # probes for the order check only
    arrive, send = handler._handle_qos_1_publish_packet, handler._send_puback

    def arrive_probe(mid: int, *args: Any) -> None:
        w.first()
        w.arrived.append(mid)
        arrive(mid, *args)

    def send_probe(mid: int, reason_code: int = 0) -> None:
        send(mid, reason_code)
        w.acked.append(mid)
        if w.maybe_last(c.messages):
            finished.set()

    handler._handle_qos_1_publish_packet = arrive_probe
    handler._send_puback = send_probe

    open_batch: list[asyncio.Future[None]] = []

    async def on_message(_client: Any, _topic: str, _payload: bytes, _qos: int, _props: Any) -> int:
        if not open_batch or open_batch[-1].done():
            open_batch.append(asyncio.get_running_loop().create_future())
        committed = open_batch[-1]
        batcher.add(committed)
        await committed  # the PUBACK leaves when this returns
        return 0

    def on_connect(_client: Any, flags: Any, _rc: Any, _props: Any) -> None:
        w.sessions += 1
        w.session_present = bool(flags)
        connected.set()

    async def commit_loop() -> None:
        while True:
            batch: list[asyncio.Future[None]] = await batcher.take()
            burn(c.commit_cpu_us * len(batch))
            if c.commit_s:
                await asyncio.sleep(c.commit_s)
            for fut in dict.fromkeys(batch):  # the futures of the batch (usually one)
                if not fut.done():
                    fut.set_result(None)
            open_batch.clear()

    client.on_message = on_message
    client.on_connect = on_connect
    await client.connect(c.host, c.port, ssl=_tls(c.ca_file), version=MQTTv50, keepalive=30)
    await connected.wait()
    client.subscribe(ingest_subscription(), qos=1)
    committer = asyncio.create_task(commit_loop())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), c.timeout_s)
        await asyncio.sleep(0.5)  # let the last PUBACKs leave
    finally:
        committer.cancel()
        await client.disconnect()
    return w.result(c.messages, c.commit_cpu_us)


def consume_gmqtt(c: Conf) -> dict[str, Any]:
    return asyncio.run(_gmqtt(c))


CONSUMERS: dict[str, Callable[[Conf], dict[str, Any]]] = {
    "paho": consume_paho,
    "aiomqtt": consume_aiomqtt,
    "gmqtt": consume_gmqtt,
}


def _consumer_main(name: str, conf: dict[str, Any], out: Any) -> None:
    try:
        out.put(CONSUMERS[name](Conf(**conf)))
    except BaseException as exc:
        out.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


# -- the broker side: session, publisher, redelivery check --------------------------------------


def _paho(client_id: str, username: str, password: str, ca_file: str, **kw: Any) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kw)
    c.tls_set_context(_tls(ca_file))
    c.username_pw_set(username, password)
    return c


def _connect_props(expiry: int) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    return props


def open_session(c: Conf) -> None:
    """Connect as the consumer, join the shared subscription, leave: the broker now queues for it."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from rpm_core.topics import ingest_subscription

    client = _paho(c.client_id, c.client_id, c.password, c.ca_file)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda cl, *_a: cl.subscribe(ingest_subscription(), options=SubscribeOptions(qos=1))
    client.connect(c.host, c.port, keepalive=30, clean_start=True, properties=_connect_props(SESSION_EXPIRY_S))
    client.loop_start()
    try:
        if not subscribed.wait(20):
            raise RuntimeError(f"{c.client_id}: no SUBACK")
    finally:
        client.disconnect()
        client.loop_stop()


def redelivered(c: Conf, wait_s: float = 2.0) -> int:
    """Open the consumer's session again (auto-ack) and count what the broker still had; end the session."""
    got = [0]
    client = _paho(c.client_id, c.client_id, c.password, c.ca_file)
    client.on_message = lambda *_a: got.__setitem__(0, got[0] + 1)
    client.connect(c.host, c.port, keepalive=30, clean_start=False, properties=_connect_props(0))
    client.loop_start()
    time.sleep(wait_s)
    client.disconnect()
    client.loop_stop()
    return got[0]


def publisher_main(conf: dict[str, Any], out: Any) -> None:
    """A separate process: the agent publishes ``count`` QoS 1 copies of ``payload`` and waits for every PUBACK."""
    done = threading.Event()
    acked = [0]
    n = conf["count"]

    def on_publish(*_a: Any) -> None:
        acked[0] += 1
        if acked[0] >= n:
            done.set()

    client = _paho(conf["agent"], conf["agent"], conf["password"], conf["ca_file"])
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(conf["host"], conf["port"], keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(20):
            raise RuntimeError("publisher: no CONNACK")
        t0 = time.monotonic()
        for _ in range(n):
            client.publish(conf["topic"], conf["payload"], qos=1)
        ok = done.wait(conf["timeout_s"])
        dt = time.monotonic() - t0
        out.put({"published": acked[0], "complete": ok, "publish_s": round(dt, 2)})
    finally:
        client.disconnect()
        client.loop_stop()


def sealed_envelope() -> tuple[str, bytes]:
    """One real one-reading envelope (the topic it travels on and its bytes)."""
    from rpm_core.envelope import ReadingBatch, seal_batch
    from rpm_core.ids import agent_id, org_id
    from rpm_core.keys import AgentKeys, ServerKey
    from rpm_core.reading import Reading

    at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    reading = Reading(
        agent_id=AGENT,
        device_id="F0:12:34:56:78:9A",
        seq=1,
        metric="heart_rate",
        value=72.0,
        measured_at=at,
        flags=frozenset({"contact"}),
    )
    batch = ReadingBatch(org_id(ORG), agent_id(AGENT), at, (reading,))
    topic, data = seal_batch(batch, agent=AgentKeys.generate(), server=ServerKey.generate().public())
    return str(topic), data


def _run_child(ctx: Any, target: Callable[..., None], args: tuple[Any, ...], timeout: float) -> dict[str, Any]:
    out = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, out))
    p.start()
    try:
        result: dict[str, Any] = out.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - queue.Empty: the child died or hung
        result = {"error": f"no result (exit code {p.exitcode})"}
    p.join(30)
    if p.is_alive():
        p.kill()
        p.join()
    return result


def installed(name: str) -> bool:
    module = {"paho": "paho.mqtt"}.get(name, name)
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description="MQTT clients for ingest: CPU per message with acks after commit")
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated, from: " + ", ".join(CLIENTS))
    ap.add_argument("--batch", type=int, default=500, help="ingest's batch_max_messages")
    ap.add_argument("--batch-wait-ms", type=float, default=50, help="ingest's batch_max_wait_ms")
    ap.add_argument("--commit-ms", type=float, default=0, help="simulated COMMIT time per batch")
    ap.add_argument(
        "--commit-cpu-us",
        type=float,
        default=0,
        help="CPU burnt in Python per message at the COMMIT (paho: in the batch thread, holding the GIL; "
        "asyncio clients: in the event loop), as ingest's opening and verifying would",
    )
    ap.add_argument("--receive-maximum", type=int, default=2000, help="ingest's mqtt_receive_maximum")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    names = [n.strip() for n in args.clients.split(",") if n.strip()]
    unknown = [n for n in names if n not in CLIENTS]
    if unknown:
        ap.error(f"unknown client(s) {unknown}; choose from {CLIENTS}")

    from bench.ingest_workload import cpu_seconds
    from vigil_testkit.broker import start_secure_broker

    ctx = mp.get_context("spawn")
    topic, payload = sealed_envelope()
    report: dict[str, Any] = {
        "messages": args.messages,
        "payload_bytes": len(payload),
        "topic_bytes": len(topic),
        "batch": args.batch,
        "batch_wait_ms": args.batch_wait_ms,
        "commit_ms": args.commit_ms,
        "commit_cpu_us": args.commit_cpu_us,
        "receive_maximum": args.receive_maximum,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "clients": {},
    }
    with tempfile.TemporaryDirectory(prefix="vigil-mqtt-clients-") as tmp:
        broker = start_secure_broker(Path(tmp) / "broker")
        try:
            agent_password = broker.add_agent(ORG, AGENT)
            for name in names:
                if not installed(name):
                    report["clients"][name] = {"skipped": f"{name} is not installed (pip install {name})"}
                    continue
                client_id = f"vigil-ingest-bench-{name}"
                conf = Conf(
                    host="localhost",
                    port=broker.port,
                    ca_file=str(broker.layout.ca),
                    client_id=client_id,
                    password=broker.add_ingest(client_id),
                    messages=args.messages,
                    batch=args.batch,
                    batch_wait_s=args.batch_wait_ms / 1000,
                    commit_s=args.commit_ms / 1000,
                    commit_cpu_us=args.commit_cpu_us,
                    receive_maximum=args.receive_maximum,
                    timeout_s=args.timeout,
                )
                open_session(conf)
                pub_conf = {
                    "host": conf.host,
                    "port": conf.port,
                    "ca_file": conf.ca_file,
                    "agent": AGENT,
                    "password": agent_password,
                    "topic": topic,
                    "payload": payload,
                    "count": args.messages,
                    "timeout_s": args.timeout,
                }
                pub = _run_child(ctx, publisher_main, (pub_conf,), args.timeout + 30)
                broker_pid = broker.proc.proc.pid if broker.proc.proc is not None else None
                b0 = cpu_seconds(broker_pid) if broker_pid else None
                res = _run_child(ctx, _consumer_main, (name, asdict(conf)), args.timeout + 30)
                b1 = cpu_seconds(broker_pid) if broker_pid else None
                if b0 is not None and b1 is not None:
                    res["broker_cpu_us_per_message"] = round(1e6 * (b1 - b0) / args.messages, 1)
                res["redelivered"] = redelivered(conf)
                report["clients"][name] = {**res, "publisher": pub, **NOTES[name]}
                print(json.dumps({name: report["clients"][name]}), flush=True)
        finally:
            broker.stop()
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
