"""A publisher process of the ingest benchmark: a slice of the fleet, one MQTT/TLS connection per agent.

The benchmark (bench/ingest.py) starts several of these (``multiprocessing`` spawn) and drives
them with commands over a pipe, one at a time, each answered with a dict:

``connect``            open every agent's connection (at most ``connect_concurrency`` handshakes
                       at a time) and subscribe to its receipts
``prepare``            seal each agent's next envelopes for a scenario (``counts``: agent -> how
                       many, ``per_envelope`` readings each); answers the (agent, first, last)
                       sequence ranges
``start``              release the prepared envelopes: all at once (``rate`` None) or paced at
                       ``rate`` envelopes/s, round-robin over the agents, from ``start_at``
                       (a ``time.monotonic()`` instant, the same clock in every process)
``wait``               until every envelope of the run is receipted (or ``wait_s``): the run's
                       figures, publish-to-receipt latencies included
``connected``          how many agents are connected now
``close``              disconnect everything and end the process

Each simulated agent behaves like the real one (edge_agent/uplink.py) where it matters to the
server: at most ``window`` envelopes without a receipt (the agent's ``max_inflight_envelopes``),
a receipt's ``through`` releases every envelope up to it, and a dropped connection is retried
with the agent's own backoff (``rpm_core.backoff``, base 0.5 s, factor 2, jitter up to half) and
followed by sending every unreceipted envelope again, as is an envelope without a receipt for
``receipt_timeout_s`` (60 s, the agent's default), and, as the agent does after a PUBACK 0x10 (no
matching subscribers: the broker dropped it, ingest not subscribed), sooner: after
``no_subscriber_retry_s`` (2 s, the agent's default), doubling while 0x10 answers repeat without a
receipt in between, at most ``receipt_timeout_s``; 0 turns that off (the fleet before the agent
learnt it). Latency is from the first publish of an
envelope to the arrival of a receipt covering it. Receipts are decoded for ``through``; one in
``verify_every`` also has its signature verified against the server key (all would cost ~150 us
each on the same cores as the server); any that fails counts in ``bad_receipts``.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import cbor2

from bench.ingest_workload import AgentCreds, raise_nofile, seal_envelopes
from bench.mqtt_fleet import (
    AgentConnection,
    ConnectRefused,
    MqttProtocolError,
    PubackStats,
    client_context,
    connect_agent,
    small_tls_buffers,
)
from rpm_core.backoff import BackoffPolicy, backoff_delay

__all__ = ["FleetSpec", "fleet_main"]

_CONNECT_ERRORS = (OSError, TimeoutError, ssl.SSLError, ConnectRefused, MqttProtocolError)


@dataclass(frozen=True, slots=True)
class FleetSpec:
    index: int
    host: str
    port: int
    ca: str
    server_name: str
    server_kex: bytes
    server_sign: bytes
    agents: list[AgentCreds]
    keepalive_s: int = 60
    connect_timeout_s: float = 60.0
    connect_concurrency: int = 50
    verify_every: int = 50
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0  # the agent's mqtt_backoff_cap_s default
    receipt_timeout_s: float = 60.0  # the agent's receipt_timeout_s default
    no_subscriber_retry_s: float = 2.0  # the agent's no_subscriber_retry_s default; 0 = wait for the receipt timeout
    nofile: int = 4096


@dataclass(slots=True)
class _Sent:
    last: int
    at: float  # first publish (latency)
    data: bytes
    run: int
    sent: float  # last (re)publish (receipt timeout)


class _Agent:
    __slots__ = (
        "conn",
        "creds",
        "inflight",
        "keys",
        "next_seq",
        "nosub_at",
        "nosub_streak",
        "pending",
        "receipts",
        "through",
        "up",
    )

    def __init__(self, creds: AgentCreds, keys: Any) -> None:
        self.creds = creds
        self.keys = keys
        self.up = f"vigil/v1/{creds.org}/{creds.agent}/up/readings".encode()
        self.receipts = f"vigil/v1/{creds.org}/{creds.agent}/down/receipts"
        self.conn: AgentConnection | None = None
        self.next_seq = 1
        self.through = 0
        self.pending: deque[tuple[int, bytes, int]] = deque()  # released, not yet sent (window full)
        self.inflight: deque[_Sent] = deque()  # sent, no receipt yet
        self.nosub_at: float | None = None  # resend the unreceipted then (after a PUBACK 0x10)
        self.nosub_streak = 0  # 0x10 answers since the last receipt: the retry doubles with each


class Fleet:
    def __init__(self, spec: FleetSpec, pipe: Connection) -> None:
        from rpm_core.keys import AgentKeys, ServerPublicKey

        self.spec = spec
        self.pipe = pipe
        self.server = ServerPublicKey(kex=spec.server_kex, sign=spec.server_sign)
        self.agents = {a.agent: _Agent(a, AgentKeys.from_pem(a.sign_pem, a.kex_pem)) for a in spec.agents}
        self.ctx = client_context(spec.ca)
        self.policy = BackoffPolicy(base_s=spec.backoff_base_s, factor=2.0, cap_s=spec.backoff_cap_s)
        self.rng = random.Random(spec.index)
        self.window = 8
        self.closing = False
        self.reconnecting: set[str] = set()
        self.nosub: dict[str, _Agent] = {}  # agents with a 0x10 resend due
        self._tasks: set[asyncio.Task[Any]] = set()
        self.run_id = 0
        self.pubacks = PubackStats()
        self._new_run()
        self.plan: list[tuple[_Agent, int, bytes]] = []
        self.run_task: asyncio.Task[None] | None = None

    def _new_run(self) -> None:
        self.run_id += 1
        self.outstanding = 0
        self.released_all = False
        self.done = asyncio.Event()
        self.latencies: list[float] = []
        self.first_pub: float | None = None
        self.last_pub: float | None = None
        self.last_receipt: float | None = None
        self.published = self.resent = self.receipts_seen = self.verified = self.bad_receipts = 0
        self.reconnects = self.connect_failures = self.timeouts = self.nosub_resends = 0
        self.last_connected: float | None = None
        self.pubacks.pubacks = self.pubacks.refused = self.pubacks.unrouted = 0

    # ------------------------------------------------------------------ commands

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        timers = [
            asyncio.create_task(self._keepalive()),
            asyncio.create_task(self._receipt_timer()),
            asyncio.create_task(self._nosub_timer()),
        ]
        while True:
            cmd: dict[str, Any] = await loop.run_in_executor(None, self.pipe.recv)
            op = cmd.pop("op")
            if op == "close":
                await self._close()
                self.pipe.send({"ok": True})
                for timer in timers:
                    timer.cancel()
                return
            reply = await getattr(self, f"cmd_{op}")(**cmd)
            self.pipe.send(reply)

    async def cmd_connect(self) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(self.spec.connect_concurrency)
        await asyncio.gather(*(self._first_connect(a, gate) for a in self.agents.values()))
        connected = sum(1 for a in self.agents.values() if a.conn is not None)
        return {"connected": connected, "agents": len(self.agents), "s": time.monotonic() - started}

    async def cmd_prepare(self, counts: dict[str, int], per_envelope: int) -> dict[str, Any]:
        self.plan = []
        ranges = []
        per_agent: list[list[tuple[int, bytes]]] = []
        agents = [self.agents[name] for name in counts]
        for a in agents:
            count = counts[a.creds.agent]
            sealed = seal_envelopes(
                a.creds, a.keys, self.server, first_seq=a.next_seq, per_envelope=per_envelope, count=count
            )
            ranges.append((a.creds.agent, a.next_seq, a.next_seq + per_envelope * len(sealed) - 1))
            a.next_seq += per_envelope * len(sealed)
            per_agent.append(sealed)
            await asyncio.sleep(0)  # keep the connections' keep-alives going
        for i in range(max((len(s) for s in per_agent), default=0)):  # round-robin, each agent in seq order
            self.plan.extend((a, *s[i]) for a, s in zip(agents, per_agent, strict=True) if i < len(s))
        return {"envelopes": len(self.plan), "ranges": ranges}

    async def cmd_start(self, rate: float | None, start_at: float, window: int) -> dict[str, Any]:
        self._new_run()
        self.window = window
        self.outstanding = len(self.plan)
        self.run_task = asyncio.create_task(self._release(self.plan, rate, start_at, self.run_id))
        self.plan = []
        return {"ok": True}

    async def cmd_wait(self, wait_s: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(wait_s):
                await self.done.wait()
        except TimeoutError:
            pass
        if self.run_task is not None and not self.run_task.done():
            self.run_task.cancel()
        return {
            "published": self.published,
            "resent": self.resent,
            "unreceipted": self.outstanding,
            "latencies_ms": [round(1000 * x, 2) for x in self.latencies],
            "first_pub": self.first_pub,
            "last_pub": self.last_pub,
            "last_receipt": self.last_receipt,
            "receipts": self.receipts_seen,
            "verified_receipts": self.verified,
            "bad_receipts": self.bad_receipts,
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "last_connected": self.last_connected,
            "connected": sum(1 for a in self.agents.values() if a.conn is not None),
            "pubacks": self.pubacks.pubacks,
            "refused_pubacks": self.pubacks.refused,
            "unrouted_pubacks": self.pubacks.unrouted,
            "receipt_timeouts": self.timeouts,
            "no_subscriber_resends": self.nosub_resends,
        }

    async def cmd_connected(self) -> dict[str, Any]:
        return {"connected": sum(1 for a in self.agents.values() if a.conn is not None)}

    # ------------------------------------------------------------------ publishing

    async def _release(
        self, plan: list[tuple[_Agent, int, bytes]], rate: float | None, start_at: float, run: int
    ) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        touched: set[str] = set()
        for i, (a, last, data) in enumerate(plan):
            if rate is not None:
                due = start_at + i / rate
                if (delay := due - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
            a.pending.append((last, data, run))
            if rate is not None:
                self._pump(a)
            else:
                touched.add(a.creds.agent)
        for name in touched:
            self._pump(self.agents[name])
        self.released_all = True
        self._check_done()

    def _pump(self, a: _Agent) -> None:
        conn = a.conn
        if conn is None or conn.closed:
            return
        while a.pending and len(a.inflight) < self.window:
            last, data, run = a.pending.popleft()
            conn.publish(a.up, data)
            now = time.monotonic()
            a.inflight.append(_Sent(last, now, data, run, now))
            if run == self.run_id:
                self.published += 1
                self.last_pub = now
                if self.first_pub is None:
                    self.first_pub = now

    def _check_done(self) -> None:
        if self.released_all and self.outstanding <= 0:
            self.done.set()

    def _on_message(self, a: _Agent, topic: bytes, payload: bytes) -> None:
        now = time.monotonic()
        self.receipts_seen += 1
        try:
            msg = cbor2.loads(payload)
            through = int(cbor2.loads(msg.value[2])["through"])
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, cbor2.CBORDecodeError):
            self.bad_receipts += 1
            return
        if self.receipts_seen % self.spec.verify_every == 1:
            self._verify(topic, payload, through)
        if through <= a.through:
            return
        a.through = through
        a.nosub_streak = 0
        while a.inflight and a.inflight[0].last <= through:
            sent = a.inflight.popleft()
            if sent.run == self.run_id:
                self.latencies.append(now - sent.at)
                self.outstanding -= 1
        self.last_receipt = now
        self._pump(a)
        self._check_done()

    def _verify(self, topic: bytes, payload: bytes, through: int) -> None:
        from rpm_core.downlink import verify_receipt
        from rpm_core.errors import VigilError
        from rpm_core.topics import Topic

        try:
            receipt = verify_receipt(payload, topic=Topic.parse(topic.decode()), trusted=[self.server])
        except (VigilError, ValueError):
            self.bad_receipts += 1
            return
        if receipt.through != through:
            self.bad_receipts += 1
        self.verified += 1

    # ------------------------------------------------------------------ connections

    async def _connect(self, a: _Agent) -> AgentConnection:
        s = self.spec
        made: list[AgentConnection] = []
        conn = await connect_agent(
            host=s.host,
            port=s.port,
            ctx=self.ctx,
            server_name=s.server_name,
            client_id=a.creds.agent,  # the broker binds each account to its own id
            username=a.creds.agent,
            password=a.creds.password,
            subscribe=a.receipts,
            keepalive=s.keepalive_s,
            timeout_s=s.connect_timeout_s,
            on_message=lambda topic, payload: self._on_message(a, topic, payload),
            on_lost=lambda exc: self._on_lost(a, made[0] if made else None, exc),
            stats=self.pubacks,
            on_unrouted=lambda: self._on_unrouted(a),
        )
        made.append(conn)
        return conn

    async def _first_connect(self, a: _Agent, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                a.conn = await self._connect(a)
            except _CONNECT_ERRORS as exc:
                self.connect_failures += 1
                error: BaseException = exc
            else:
                return
        await self._reconnect(a, error, attempt=1)

    def _on_lost(self, a: _Agent, conn: AgentConnection | None, exc: Exception | None) -> None:
        if conn is None or a.conn is not conn:
            return  # a connection attempt that failed, or one already replaced
        a.conn = None
        if self.closing or a.creds.agent in self.reconnecting:
            return
        task = asyncio.get_running_loop().create_task(self._reconnect(a, exc, attempt=0))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self, a: _Agent, error: BaseException | None, *, attempt: int) -> None:
        """As the agent's MqttLink: wait (backoff with jitter), connect, send every unreceipted envelope again."""
        self.reconnecting.add(a.creds.agent)
        try:
            while not self.closing:
                await asyncio.sleep(backoff_delay(error, attempt, policy=self.policy, jitter=self.rng.random() * 0.5))
                try:
                    conn = await self._connect(a)
                except _CONNECT_ERRORS as exc:
                    self.connect_failures += 1
                    error, attempt = exc, attempt + 1
                    continue
                a.conn = conn
                a.nosub_at = None  # everything unreceipted goes again now
                self.nosub.pop(a.creds.agent, None)
                self.reconnects += 1
                self.last_connected = time.monotonic()
                now = time.monotonic()
                for sent in a.inflight:
                    conn.publish(a.up, sent.data)
                    sent.sent = now
                    self.resent += 1
                self._pump(a)
                return
        finally:
            self.reconnecting.discard(a.creds.agent)

    async def _keepalive(self) -> None:
        every = self.spec.keepalive_s / 3
        while True:
            await asyncio.sleep(every)
            idle_since = time.monotonic() - self.spec.keepalive_s / 2
            for a in self.agents.values():
                if a.conn is not None and a.conn.last_write < idle_since:
                    a.conn.ping()

    async def _receipt_timer(self) -> None:
        """As the agent: no receipt for ``receipt_timeout_s`` -> send every unreceipted envelope again."""
        limit = self.spec.receipt_timeout_s
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for a in self.agents.values():
                if a.inflight and a.conn is not None and now - a.inflight[0].sent >= limit:
                    self.timeouts += 1
                    for sent in a.inflight:
                        a.conn.publish(a.up, sent.data)
                        sent.sent = now
                        self.resent += 1

    def _on_unrouted(self, a: _Agent) -> None:
        """As the agent (Uplink.on_no_subscribers): schedule one resend of everything unreceipted."""
        retry = self.spec.no_subscriber_retry_s
        if retry <= 0 or a.nosub_at is not None:
            return
        delay = min(self.spec.receipt_timeout_s, retry * 2 ** min(a.nosub_streak, 16))
        a.nosub_at = time.monotonic() + delay
        a.nosub_streak += 1
        self.nosub[a.creds.agent] = a

    async def _nosub_timer(self) -> None:
        """Send again, at its time, what the broker dropped for want of a subscriber (PUBACK 0x10)."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for name, a in list(self.nosub.items()):
                if a.nosub_at is None:
                    del self.nosub[name]
                elif now >= a.nosub_at and a.conn is not None:
                    a.nosub_at = None
                    del self.nosub[name]
                    self.nosub_resends += 1
                    for sent in a.inflight:
                        a.conn.publish(a.up, sent.data)
                        sent.sent = now
                        self.resent += 1

    async def _close(self) -> None:
        self.closing = True
        for a in self.agents.values():
            if a.conn is not None:
                a.conn.disconnect()
        await asyncio.sleep(0.2)


def fleet_main(spec: FleetSpec, pipe: Connection) -> None:
    """Entry point of a publisher process."""
    raise_nofile(spec.nofile)
    small_tls_buffers()

    async def main() -> None:
        await Fleet(spec, pipe).serve()

    asyncio.run(main())
