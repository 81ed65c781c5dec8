"""The MQTT side of ingest: a paho-mqtt 2.x MQTT v5 client set up for "ack after COMMIT".

* ``manual_ack=True`` and QoS 1: paho sends no PUBACK until :meth:`MqttConsumer.ack`.
* ``clean_start=False`` with a Session Expiry Interval: the broker keeps our subscription and the
  unacknowledged backlog across restarts. Every CONNACK's ``session_present`` is reported; a
  reconnect without a session (the broker lost it, or it expired) is logged as an error.
* Receive Maximum: how many unacknowledged messages the broker may push to us (the batch bound).
* TLS 1.2+ against the Vigil CA only, host name checked; or, given ``socket_path``, the broker's
  Unix socket listener for ingest (local, file permissions; no TLS to pay), so that ingest never
  queues behind agents' TLS handshakes in their listener's accept queue. The shared subscription
  ``$share/{group}/vigil/v1/+/+/up/#`` so several workers split the load.
* Reconnects: every second after a drop (:data:`RECONNECT_MIN_S`, :data:`RECONNECT_MAX_S`; paho
  takes whole seconds): while ingest is away, Mosquitto 2.0.11 (which does not keep shared
  subscriptions over a restart) drops every uplink with PUBACK 0x10, and waiting longer between
  tries gains nothing: a failed try on the socket costs a refused connect, over TLS one handshake
  per worker and second.
* The broker account is bound to the client id (``vigil-ingest-N``): no other account can take
  this worker's session. A second client with the same id (two workers given one ``--client-id``)
  still displaces us: reported through ``on_takeover``, from DISCONNECT 0x8E or, on Mosquitto
  2.0.11 which just closes the connection, from the ping-pong pattern
  (:class:`rpm_core.takeover.TakeoverDetector`).
* A SUBACK refusing the shared subscription (the account's grant names another group) is logged
  as an error: the worker would otherwise wait for messages that never come.
* PUBACKs of a committed batch leave as one write (one TLS record, one segment) in arrival order,
  not one record per message; TCP_NODELAY, so acknowledgements and receipts are not held back by
  Nagle's algorithm waiting for the broker's delayed ACK.

paho runs its network loop in its own thread (reconnecting by itself); callbacks are invoked there.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from rpm_core.takeover import SESSION_TAKEN_OVER, TakeoverDetector

__all__ = ["RECONNECT_MAX_S", "RECONNECT_MIN_S", "MqttConsumer", "tls_context"]

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes, int, int], None]  # topic, payload, mid, qos
OnConnected = Callable[[bool], None]  # session_present
OnTakeover = Callable[[bool], None]  # inferred (True) or said by the broker (False)

_PUBACK: Final = struct.Struct("!BBH")  # fixed header 0x40, remaining length 2, packet id
_PUBACK_COMMAND: Final = 0x40
_UNSPECIFIED: Final = 0x80  # what paho reports for a connection that ended without a DISCONNECT
RECONNECT_MIN_S: Final = 1  # paho's wait before the first reconnect after a drop (whole seconds in its API)
RECONNECT_MAX_S: Final = 1  # ... and every second after that
_UNIX_PORT: Final = 1  # paho checks the port even for a Unix socket, and then ignores it


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
        on_takeover: OnTakeover | None = None,
        takeover: TakeoverDetector | None = None,
        socket_path: Path | None = None,
    ) -> None:
        self._host, self._port, self._keepalive = host, port, keepalive_s
        if socket_path is not None:
            self._host, self._port = str(socket_path), _UNIX_PORT
        self._client_id = client_id
        self._subscription = subscription
        self._on_message_cb, self._on_connected_cb = on_message, on_connected
        self._on_takeover_cb = on_takeover
        self._takeover = takeover or TakeoverDetector()
        self.subscription_refused = False
        self._props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        self._props.SessionExpiryInterval = session_expiry_s
        self._props.ReceiveMaximum = receive_maximum
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            transport="tcp" if socket_path is None else "unix",
        )
        if socket_path is None:
            c.tls_set_context(tls_context(ca_file))
        c.username_pw_set(username, password)
        c.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        c.max_inflight_messages_set(1000)  # our own outgoing receipts
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_subscribe = self._on_subscribe
        c.on_socket_open = _no_delay
        self._client = c

    def start(self) -> None:
        unix = self._client.transport == "unix"
        where = f"the Unix socket {self._host}" if unix else f"{self._host}:{self._port} (TLS)"
        log.info("connecting to the broker at %s as %s", where, self._client_id)
        self._client.connect_async(
            self._host, self._port, keepalive=self._keepalive, clean_start=False, properties=self._props
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, mid: int) -> None:
        self._client.ack(mid, 1)

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK ``mids`` (QoS 1, manual ack) in this order.

        The bytes are exactly those of ``ack(mid)`` for each mid in turn (an MQTT 5 PUBACK with
        reason Success may omit the reason code), queued as one packet so that paho writes them
        in one TLS record instead of one per message. paho has no public call for that; without
        its internal queue this falls back to one ``ack`` per message.
        """
        queue = getattr(self._client, "_packet_queue", None)
        if len(mids) < 2 or queue is None:
            for mid in mids:
                self._client.ack(mid, 1)
            return
        queue(_PUBACK_COMMAND, b"".join([_PUBACK.pack(_PUBACK_COMMAND, 2, mid) for mid in mids]), 0, 0)

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1)

    def is_connected(self) -> bool:
        return bool(self._client.is_connected())

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._takeover.failed()
            log.error("broker refused the connection of %s: %s", self._client_id, reason)
            return
        self._takeover.accepted(time.monotonic())
        present = bool(flags.session_present)
        self._on_connected_cb(present)
        client.subscribe(self._subscription, options=SubscribeOptions(qos=1))

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._takeover.failed()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        refused = [c for c in codes if c.is_failure]
        self.subscription_refused = bool(refused)
        if refused:
            log.error(
                "the broker refused the subscription %s (%s): this account may not join that group "
                "(the rendered grant is for the 'ingest' group); nothing will be consumed",
                self._subscription,
                refused[0],
            )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        log.warning("disconnected from the broker (%s); paho reconnects", reason)
        if reason.value == SESSION_TAKEN_OVER:
            taken, inferred = self._takeover.taken_over(), False
        else:
            cut = not flags.is_disconnect_packet_from_server and reason.value == _UNSPECIFIED
            taken, inferred = self._takeover.ended(time.monotonic(), cut=cut), True
        if taken and self._on_takeover_cb is not None:
            self._on_takeover_cb(inferred)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<invalid utf-8>"
        payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
        self._on_message_cb(topic, payload, msg.mid, msg.qos)


def _no_delay(_c: mqtt.Client, _u: Any, sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (a test double, a Unix socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
