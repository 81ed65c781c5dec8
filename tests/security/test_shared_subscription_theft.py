"""Issue 10, item 2: an enrolled agent joins ingest's shared-subscription group.

With Mosquitto's ACL file every SUBSCRIBE was granted and "read" checked only at delivery, so an
agent subscribed to ``$share/ingest/vigil/v1/+/+/up/#`` took round-robin turns with ingest: the
broker handed it every other envelope of other agents, dropped it at delivery (no read grant) and
the publisher had its PUBACK, so those envelopes were lost until the agent's 60 s resend.

Here the attacker holds one enrolled agent's own credentials (from ``vigil agents create``) against
the broker ``vigil broker render`` configured from a real database. Every subscription outside its
own downlink is refused in the SUBACK (0x87), shared filters included, and with the attacker
connected a real ingest worker stores every envelope of another agent at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from ingest.service import IngestService
from rpm_core.keystore import load_server_keys
from tests.support.agents import SimAgent, readings
from tests.support.platform import RenderedPlatform, start_platform, wait_for

NOT_AUTHORIZED = 0x87
ENVELOPES = 40

# Everything an agent might try in order to read what is not its own.
STOLEN = (
    "$share/ingest/vigil/v1/+/+/up/#",  # ingest's exact group and filter
    "$share/ingest/vigil/v1/clinic-1/agt-victim/up/#",  # the group, narrowed to the victim
    "$share/ingest/vigil/v1/+/+/up/readings",
    "$share/ingest/#",
    "$share/thieves/vigil/v1/+/+/up/#",  # another group name
    "$share/agt-thief/vigil/v1/clinic-1/agt-thief/down/#",  # its own downlink, as a shared filter
    "vigil/v1/+/+/up/#",
    "vigil/v1/clinic-1/agt-victim/up/#",
    "vigil/v1/#",
    "#",
    "+/#",
    "$SYS/#",
    "$CONTROL/#",
    "$CONTROL/dynamic-security/v1/response",
    "vigil/v1/clinic-1/agt-victim/down/#",  # another agent's downlink
    "vigil/v1/clinic-1/+/down/#",
    "vigil/v1/+/agt-thief/down/#",  # its own id under any organisation
)


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path)
    try:
        yield p
    finally:
        p.stop()


class Subscriber:
    """The attacker's connection: records SUBACK codes and anything delivered to it."""

    def __init__(self, agent: SimAgent) -> None:
        self.client = agent.client
        self.codes: dict[int, list[int]] = {}
        self.delivered: list[str] = []
        self.cond = threading.Condition()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.delivered.append(msg.topic)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, codes: list, _p: object) -> None:
        with self.cond:
            self.codes[mid] = [c.value for c in codes]
            self.cond.notify_all()

    def subscribe(self, topic: str) -> int:
        _, mid = self.client.subscribe(topic, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: mid in self.codes, 10), f"no SUBACK for {topic}"
            return self.codes[mid][0]


def test_every_subscription_outside_its_own_downlink_is_refused_at_subscribe(platform: RenderedPlatform) -> None:
    thief = platform.sim_agent(platform.create_agent("agt-thief"))
    platform.create_agent("agt-victim")
    thief.connect()  # subscribes to its own downlink, as an agent does
    attacker = Subscriber(thief)
    refused = {topic: attacker.subscribe(topic) for topic in STOLEN}
    assert refused == dict.fromkeys(STOLEN, NOT_AUTHORIZED)
    # What it is entitled to is still granted: the refusals are the grants, not a broken account.
    assert attacker.subscribe("vigil/v1/clinic-1/agt-thief/down/#") == 1
    assert attacker.subscribe("vigil/v1/clinic-1/agt-thief/down/receipts") == 1


def stored(db: str, agent: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE agent_id = %s", (agent,)).fetchone()
        return int(row[0]) if row else 0


def test_with_the_thief_in_the_group_every_envelope_is_stored_at_once(platform: RenderedPlatform) -> None:
    thief = platform.sim_agent(platform.create_agent("agt-thief"))
    victim = platform.sim_agent(platform.create_agent("agt-victim"))
    ingest = IngestService(
        platform.ingest_settings(),
        keyring=load_server_keys(platform.key_dir),
        mqtt_password=platform.ingest_password(),
    )
    ingest.start()
    try:
        wait_for(lambda: ingest.connected, 10, "ingest connected")
        thief.connect()
        attacker = Subscriber(thief)
        # The theft: join ingest's group (and a wider one) and stay connected while the victim sends.
        assert attacker.subscribe("$share/ingest/vigil/v1/+/+/up/#") == NOT_AUTHORIZED
        assert attacker.subscribe("$share/ingest/vigil/v1/+/+/up/readings") == NOT_AUTHORIZED
        victim.connect()
        victim.register_until_receipt()
        started = time.monotonic()
        for n in range(ENVELOPES):
            topic, data = victim.sealed(readings("agt-victim", n + 1, 1))
            assert victim.publish_raw(topic, data) == 0  # every PUBACK: Success
        # Every envelope stored without any resend (an agent resends after 60 s without a receipt).
        wait_for(lambda: stored(platform.db, "agt-victim") == ENVELOPES, 30, f"{ENVELOPES} readings stored")
        victim.wait_receipt(ENVELOPES)
        assert time.monotonic() - started < 60
        assert attacker.delivered == []
        assert thief.client.is_connected()  # it was there all along, refused, not disconnected
    finally:
        ingest.stop(timeout=5)


def test_an_ingest_worker_may_not_join_another_group_and_says_so(
    platform: RenderedPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    """The grant is the exact shared filter: a worker configured with another group gets nothing,
    and logs it as an error instead of waiting for messages that never come."""
    caplog.set_level(logging.ERROR, logger="ingest.consumer")
    ingest = IngestService(
        platform.ingest_settings(shared_group="elsewhere"),
        keyring=load_server_keys(platform.key_dir),
        mqtt_password=platform.ingest_password(),
    )
    ingest.start()
    try:
        wait_for(lambda: "refused the subscription" in caplog.text, 10, "the refusal logged")
        assert "$share/elsewhere/vigil/v1/+/+/up/#" in caplog.text
    finally:
        ingest.stop(timeout=5)
