"""The MQTT side of ingest: a paho-mqtt 2.x MQTT v5 client set up for "ack after COMMIT".

* ``manual_ack=True`` and QoS 1: paho sends no PUBACK until :meth:`MqttConsumer.ack`.
* ``clean_start=False`` with a Session Expiry Interval: the broker keeps our subscription and the
  unacknowledged backlog across restarts. Every CONNACK's ``session_present`` is reported; a
  reconnect without a session (the broker lost it, or it expired) is logged as an error.
* Receive Maximum: how many unacknowledged messages the broker may push to us (the batch bound).
* TLS 1.2+ against the Vigil CA only, host name checked; the shared subscription
  ``$share/{group}/vigil/v1/+/+/up/#`` so several workers split the load.

paho runs its network loop in its own thread (reconnecting by itself); callbacks are invoked there.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = ["MqttConsumer", "tls_context"]

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes, int, int], None]  # topic, payload, mid, qos
OnConnected = Callable[[bool], None]  # session_present


def tls_context(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class MqttConsumer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        ca_file: Path,
        username: str,
        password: str,
        client_id: str,
        subscription: str,
        session_expiry_s: int,
        receive_maximum: int,
        keepalive_s: int,
        on_message: OnMessage,
        on_connected: OnConnected,
    ) -> None:
        self._host, self._port, self._keepalive = host, port, keepalive_s
        self._subscription = subscription
        self._on_message_cb, self._on_connected_cb = on_message, on_connected
        self._props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._props.SessionExpiryInterval = session_expiry_s
        self._props.ReceiveMaximum = receive_maximum
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        c.tls_set_context(tls_context(ca_file))
        c.username_pw_set(username, password)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.max_inflight_messages_set(1000)  # our own outgoing receipts
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        self._client = c

    def start(self) -> None:
        self._client.connect_async(
            self._host, self._port, keepalive=self._keepalive, clean_start=False, properties=self._props
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, mid: int) -> None:
        self._client.ack(mid, 1)

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1)

    def is_connected(self) -> bool:
        return bool(self._client.is_connected())

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        present = bool(flags.session_present)
        self._on_connected_cb(present)
        client.subscribe(self._subscription, options=SubscribeOptions(qos=1))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("disconnected from the broker (%s); paho reconnects", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<invalid utf-8>"
        payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
        self._on_message_cb(topic, payload, msg.mid, msg.qos)
