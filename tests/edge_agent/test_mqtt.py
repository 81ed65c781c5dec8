"""The MQTT link against the project's TLS + password + ACL Mosquitto."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from broker_config.accounts import INGEST_USERNAME
from edge_agent.errors import BrokerError, BrokerRefused, BrokerUnreachable
from edge_agent.mqtt import MqttLink, MqttOptions
from rpm_core.backoff import BackoffPolicy, backoff_delay
from rpm_core.topics import Topic, ingest_subscription
from vigil_testkit.agent_harness import ORG, SERVER_NAME, wait_sync
from vigil_testkit.broker import SecureBroker

AGENT = "agt-mqtt-1"


class Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    def on_connected(self, generation: int) -> None:
        self.queue.put_nowait(("connected", generation))

    def on_disconnected(self, error: BrokerError) -> None:
        self.queue.put_nowait(("disconnected", error))

    def on_message(self, topic: str, payload: bytes) -> None:
        self.queue.put_nowait(("message", (topic, payload)))

    def on_no_subscribers(self) -> None:
        self.queue.put_nowait(("no_subscribers", None))

    async def next(self, kind: str) -> object:
        async with asyncio.timeout(15):
            while True:
                got, value = await self.queue.get()
                if got == kind:
                    return value


def options(broker: SecureBroker, password: str, *, server_name: str = SERVER_NAME) -> MqttOptions:
    return MqttOptions(
        host="127.0.0.1",
        port=broker.port,
        server_name=server_name,
        ca_pem=broker.layout.ca.read_text(),
        client_id=AGENT,
        username=AGENT,
        password=password,
        subscriptions=(str(Topic.receipts(ORG, AGENT)),),  # type: ignore[arg-type]
        policy=BackoffPolicy(0.05, 2, 0.2),
    )


@pytest.mark.asyncio
async def test_publish_and_receive_over_tls(broker: SecureBroker) -> None:
    password = await asyncio.to_thread(broker.add_agent, ORG, AGENT)
    seen: list[tuple[str, bytes]] = []
    ingest = broker.client(INGEST_USERNAME, INGEST_USERNAME, broker.ingest_password)
    ingest.on_message = lambda _c, _u, m: seen.append((m.topic, bytes(m.payload)))
    ingest.connect(SERVER_NAME, broker.port)
    ingest.subscribe(ingest_subscription(), qos=1)
    ingest.loop_start()
    events = Events()
    link = MqttLink(options(broker, password), listener=events, will=lambda: None, loop=asyncio.get_running_loop())
    link.start()
    try:
        generation = await events.next("connected")
        status = str(Topic.status(ORG, AGENT))  # type: ignore[arg-type]
        link.publish(status, b"stale", generation=generation - 1)  # for a previous session: dropped
        link.publish(status, b"hello", generation=generation)  # type: ignore[arg-type]
        await asyncio.to_thread(wait_sync, lambda: seen, 10, "the publish")
        receipts = str(Topic.receipts(ORG, AGENT))  # type: ignore[arg-type]
        ingest.publish(receipts, b"receipt bytes", qos=1)
        assert await events.next("message") == (receipts, b"receipt bytes")
        assert seen == [(status, b"hello")]
        assert link.denied == 0
    finally:
        await link.stop()
        ingest.loop_stop()
        ingest.disconnect()


@pytest.mark.asyncio
async def test_a_broker_certificate_for_another_name_is_refused(broker: SecureBroker) -> None:
    password = await asyncio.to_thread(broker.add_agent, ORG, AGENT)
    events = Events()
    opts = options(broker, password, server_name="broker.elsewhere.example")
    link = MqttLink(opts, listener=events, will=lambda: None, loop=asyncio.get_running_loop())
    link.start()
    try:
        error = await events.next("disconnected")
        assert isinstance(error, BrokerUnreachable)
        assert "certificate" in error.why
    finally:
        await link.stop()


@pytest.mark.asyncio
async def test_bad_credentials_are_refused_and_back_off_longest(broker: SecureBroker) -> None:
    await asyncio.to_thread(broker.add_agent, ORG, AGENT)
    events = Events()
    link = MqttLink(options(broker, "wrong"), listener=events, will=lambda: None, loop=asyncio.get_running_loop())
    link.start()
    try:
        error = await events.next("disconnected")
    finally:
        await link.stop()
    assert isinstance(error, BrokerRefused)
    assert error.code in (0x86, 0x87)
    policy = BackoffPolicy(0.5, 2, 60)
    assert backoff_delay(error, 0, policy=policy) == 60  # pinned to the cap, not hammering the broker
    assert backoff_delay(BrokerUnreachable("OSError"), 0, policy=policy) == 0.5


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (the import state of a new agent process)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


def test_the_link_loads_no_dnspython_yet_leaves_it_importable() -> None:
    """paho would load dnspython (SRV lookups the agent never makes): not in the agent's memory."""
    pytest.importorskip("dns.resolver")
    out = _fresh(
        """
        import sys
        import edge_agent.mqtt
        import paho.mqtt.client as paho
        before = "dns" in sys.modules or "dns.resolver" in sys.modules
        import dns.resolver
        print(before, paho.HAVE_DNS, dns.resolver.__name__)
        """
    )
    assert out == "False False dns.resolver"


def test_a_dnspython_loaded_before_the_link_is_left_alone() -> None:
    """Another library in the same process imported dnspython first: its module objects stay."""
    pytest.importorskip("dns.resolver")
    out = _fresh(
        """
        import sys
        import dns.resolver
        first = sys.modules["dns.resolver"]
        import edge_agent.mqtt
        print(sys.modules["dns.resolver"] is first, "dns" in sys.modules)
        """
    )
    assert out == "True True"
