"""Canary: paho-mqtt's manual acknowledgement, as ingest relies on it (ingest/consumer.py, ingest/acks.py).

Ingest acknowledges a message only after the transaction holding it committed. That rests on
paho (2.x) behaving this way, which an upgrade could change without any of our own tests noticing
at once:

- with ``manual_ack=True`` paho sends no PUBACK for a QoS 1 message by itself;
- ``ack(mid, 1)`` sends one PUBACK at once, and PUBACKs leave in the order ``ack`` is called;
- the broker redelivers, to the same persistent session, exactly what was not acknowledged;
- ``MqttConsumer.ack_many`` queues the PUBACKs of a batch as one write through paho's internal
  ``_packet_queue(command, packet, mid, qos)``, with the bytes ``ack(mid, 1)`` itself would queue.
"""

from __future__ import annotations

import inspect
import struct
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import consumer as ingest_consumer
from vigil_testkit.mosquitto import MosquittoProcess

TOPIC = "canary/ack"


class Consumer:
    """A paho client set up like ingest's (MQTT 5, manual ack, persistent session, QoS 1)."""

    def __init__(self, broker: MosquittoProcess, client_id: str = "canary-consumer") -> None:
        self.broker = broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        self.messages: list[mqtt.MQTTMessage] = []
        self.pubacks: list[int] = []  # as paho reports sending them
        self.subscribed = threading.Event()
        self.cond = threading.Condition()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_log = self._on_log

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _on_log(self, _c: mqtt.Client, _u: object, _level: int, buf: str) -> None:
        if buf.startswith("Sending PUBACK (Mid: "):
            self.pubacks.append(int(buf.removeprefix("Sending PUBACK (Mid: ").rstrip(")")))

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300
        self.client.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        self.client.subscribe(TOPIC, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"

    def wait(self, what: str, predicate: Callable[[list[mqtt.MQTTMessage]], bool]) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + 10
        with self.cond:
            while not predicate(self.messages):
                assert self.cond.wait(max(0.0, deadline - time.monotonic())), f"timed out waiting for {what}"
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(broker: MosquittoProcess, *payloads: bytes) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="canary-publisher", protocol=mqtt.MQTTv5)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        for payload in payloads:
            pub.publish(TOPIC, payload, qos=1).wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


def payloads_through(barrier: bytes) -> Callable[[list[mqtt.MQTTMessage]], bool]:
    return lambda messages: any(m.payload == barrier for m in messages)


def test_manual_ack_sends_pubacks_only_when_asked_in_call_order(mosquitto: MosquittoProcess) -> None:
    c = Consumer(mosquitto)
    c.connect()
    try:
        publish(mosquitto, b"1", b"2", b"3", b"barrier")
        # paho handles incoming packets one by one in its thread: once the barrier was handed to
        # us, any PUBACK paho were to send by itself for 1, 2 and 3 has been sent (and logged).
        got = c.wait("the barrier", payloads_through(b"barrier"))
        assert [m.payload for m in got] == [b"1", b"2", b"3", b"barrier"]
        assert c.pubacks == [], "paho acknowledged on its own despite manual_ack=True"
        first, second = got[0].mid, got[1].mid
        c.client.ack(first, 1)
        c.client.ack(second, 1)
        assert c.pubacks == [first, second]  # at once, in the order asked
    finally:
        c.close()
    # The broker kept the session: it redelivers exactly the two messages never acknowledged
    # (a later message, published after the reconnect, is the barrier for "exactly").
    again = Consumer(mosquitto)
    again.connect()
    try:
        publish(mosquitto, b"after")
        got = again.wait("the message after the reconnect", payloads_through(b"after"))
        assert [m.payload for m in got] == [b"3", b"barrier", b"after"]
    finally:
        again.close()


def test_ack_queues_the_bytes_ack_many_writes() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="canary", protocol=mqtt.MQTTv5, manual_ack=True)
    params = list(inspect.signature(client._packet_queue).parameters)
    assert params[:4] == ["command", "packet", "mid", "qos"], params  # what ack_many calls positionally
    queued: list[tuple[object, ...]] = []
    client._packet_queue = lambda *args, **_kw: queued.append(args) or mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS  # type: ignore[method-assign]
    for mid in (1, 513, 65535):
        client.ack(mid, 1)
    assert [(cmd, bytes(packet)) for cmd, packet, *_ in queued] == [
        (ingest_consumer._PUBACK_COMMAND, ingest_consumer._PUBACK.pack(ingest_consumer._PUBACK_COMMAND, 2, mid))
        for mid in (1, 513, 65535)
    ]
    assert struct.unpack("!BBH", queued[0][1]) == (0x40, 2, 1)  # PUBACK, length 2, packet id
