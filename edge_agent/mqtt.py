"""The MQTT link: paho-mqtt 2.x (MQTT v5, TLS, QoS 1) on its own thread, talking to asyncio by events.

paho's blocking calls (DNS, TCP connect, TLS handshake, ``select``) never touch the event loop:
one thread owns the client. The loop side calls :meth:`MqttLink.publish`, which only enqueues;
the thread hands connection events and downlink messages back with ``call_soon_threadsafe`` to a
:class:`LinkListener` (the uplink). A new paho client is made per connection, so nothing paho kept
in memory from an old session is replayed into a new one; durability is the outbox's job.

Reconnecting is ours, not paho's: after a failure the thread waits
``backoff_delay(error, attempt)`` (:mod:`rpm_core.backoff`), where the error is a translated
:class:`~edge_agent.errors.BrokerError` (bad credentials back off longest, a dropped connection
comes back at once). The broker's certificate must chain to the enrollment CA and name
``server_name``, whatever address is dialled; TLS 1.2 is the minimum.

Client-id takeover: a broker that hands our session to another client with our client id says so
with DISCONNECT 0x8E (Mosquitto >= 2.0.18); Mosquitto 2.0.11 only closes our connection. Every
session's end goes through a :class:`rpm_core.takeover.TakeoverDetector`, which recognises the
ping-pong of two twins (sessions accepted and then cut by the broker within seconds, several in a
row); either way the session ends with :class:`~edge_agent.errors.SessionTakenOver`, which the
uplink turns into the ``client_id_takeover`` alarm and which backs off for a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol


@contextlib.contextmanager
def _without_dnspython() -> Iterator[None]:
    """While paho is first imported, dnspython cannot be: paho loads it only for ``connect_srv``
    (DNS SRV lookups), which the agent never calls. A Pi does not install dnspython (the ``edge``
    extra does not pull it in), but a server or development environment does, and there it added
    about 4 MB to the agent's resident set. Afterwards ``import dns`` works again for anyone else."""
    hidden = [name for name in ("dns", "dns.resolver") if name not in sys.modules]
    if "paho.mqtt.client" in sys.modules:
        hidden = []
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # None: the import system raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            del sys.modules[name]


with _without_dnspython():
    import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion  # noqa: E402
from paho.mqtt.reasoncodes import ReasonCode  # noqa: E402

from edge_agent.errors import (  # noqa: E402
    BrokerDisconnected,
    BrokerError,
    BrokerRefused,
    BrokerUnreachable,
    SessionTakenOver,
)
from edge_agent.silence import ping_interval  # noqa: E402
from rpm_core.backoff import BackoffPolicy, backoff_delay  # noqa: E402
from rpm_core.takeover import TakeoverDetector  # noqa: E402
from rpm_core.topics import Kind  # noqa: E402

__all__ = ["LinkListener", "MqttLink", "MqttOptions", "tls_context"]

_log = logging.getLogger(__name__)
_TICK_S: Final = 0.05
_QOS: Final = 1
_UNSPECIFIED: Final = 0x80  # what paho reports for a connection that ended without a DISCONNECT
_NO_MATCHING_SUBSCRIBERS: Final = 0x10  # PUBACK reason (MQTT 5 §3.4.2.1): accepted, and delivered to nobody
_READINGS_SUFFIX: Final = f"/up/{Kind.READINGS.value}"


class _ServerNameContext(ssl.SSLContext):
    """Verifies the broker certificate against ``expected_name`` (the bundle's ``server_name``)."""

    expected_name: str = ""
    # paho drops the socket when the handshake fails; we keep it to close it (no fd leak per retry).
    last_socket: ssl.SSLSocket | None = None

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        self.last_socket = super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.expected_name,
            session=session,
        )
        return self.last_socket


def tls_context(ca_pem: str, server_name: str) -> _ServerNameContext:
    ctx = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.expected_name = server_name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem)
    return ctx


@dataclass(frozen=True, slots=True)
class MqttOptions:
    host: str
    port: int
    server_name: str
    ca_pem: str = field(repr=False)
    client_id: str
    username: str
    password: str = field(repr=False)
    subscriptions: tuple[str, ...]
    keepalive_s: int = 30
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)


class LinkListener(Protocol):
    """Called on the event loop."""

    def on_connected(self, generation: int) -> None: ...

    def on_disconnected(self, error: BrokerError) -> None: ...

    def on_message(self, topic: str, payload: bytes) -> None: ...

    def on_no_subscribers(self) -> None:
        """The broker answered a readings publish with PUBACK 0x10: nobody subscribes, it is dropped."""
        ...


class MqttLink:
    """Implements :class:`edge_agent.ports.Publisher`."""

    def __init__(
        self,
        options: MqttOptions,
        *,
        listener: LinkListener,
        will: Callable[[], tuple[str, bytes] | None],
        loop: asyncio.AbstractEventLoop,
        rng: Callable[[], float] = random.random,
        takeover: TakeoverDetector | None = None,
    ) -> None:
        self.options = options
        self._listener = listener
        self._will = will
        self._loop = loop
        self._rng = rng
        self._tls = tls_context(options.ca_pem, options.server_name)
        self._outgoing: queue.SimpleQueue[tuple[int, str, bytes]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-mqtt", daemon=True)
        self._generation = 0
        self._connected_generation = 0
        self._ended: BrokerError | None = None
        self._cut = False  # the current session ended by the peer closing it, without a DISCONNECT
        self._takeover = takeover or TakeoverDetector()
        self.denied = 0  # PUBACKs with a failure reason code (e.g. 0x87 not authorized)
        self.no_subscribers = 0  # readings PUBACKs with 0x10 (no matching subscribers: dropped by the broker)
        self._readings_mids: set[int] = set()  # network thread only; packet ids of the current connection

    # -- loop side ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.to_thread(self._thread.join)

    def publish(self, topic: str, payload: bytes, *, generation: int) -> None:
        self._outgoing.put((generation, topic, payload))

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the agent is shutting down
            self._loop.call_soon_threadsafe(callback, *args)

    # -- the network thread ---------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            self._generation += 1
            self._ended, self._cut = None, False
            error = self._judge(self._session(self._new_client()))
            if self._stopping.is_set():
                break
            if self._connected_generation == self._generation:
                attempt = 0  # it worked until it broke: start the backoff over
            self._post(self._listener.on_disconnected, error)
            delay = backoff_delay(error, attempt, policy=self.options.policy, jitter=self._rng() * 0.5)
            attempt += 1
            _log.warning("%s; reconnecting in %.1f s", error, delay)
            self._stopping.wait(delay)

    def _judge(self, error: BrokerError) -> BrokerError:
        """``error``, or :class:`SessionTakenOver` when this ending shows another client has our id."""
        if self._connected_generation != self._generation:  # never accepted: not a twin's doing
            self._takeover.failed()
            return error
        if isinstance(error, BrokerDisconnected) and error.taken_over:
            self._takeover.taken_over()
            return _chain(SessionTakenOver(inferred=False), error)
        if self._takeover.ended(time.monotonic(), cut=self._cut and not self._stopping.is_set()):
            return _chain(SessionTakenOver(inferred=True, cuts=self._takeover.threshold), error)
        return error

    def _new_client(self) -> paho.Client:
        o = self.options
        self._readings_mids.clear()  # packet ids start again with each connection
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=o.client_id, protocol=MQTTProtocolVersion.MQTTv5)
        client.tls_set_context(self._tls)
        client.username_pw_set(o.username, o.password)
        client.max_inflight_messages_set(100)
        will = self._will()
        if will is not None:
            client.will_set(will[0], will[1], qos=_QOS, retain=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _session(self, client: paho.Client) -> BrokerError:
        o = self.options
        try:
            # 3/4 of the setting: a half-open path is given up within 1.5 x keepalive (edge_agent/silence.py)
            client.connect(o.host, o.port, keepalive=ping_interval(o.keepalive_s), clean_start=True)
        except (OSError, ValueError) as exc:
            if self._tls.last_socket is not None:
                self._tls.last_socket.close()
            return _connect_error(exc)
        self._tls.last_socket = None
        while not self._stopping.is_set():
            rc = client.loop(timeout=_TICK_S)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._ended is not None:
                if self._ended is None:
                    self._cut = rc == MQTTErrorCode.MQTT_ERR_CONN_LOST
                return self._ended or BrokerDisconnected(_UNSPECIFIED, paho.error_string(rc))
            self._drain(client)
        self._drain(client)
        client.disconnect()
        for _ in range(10):  # let the last publishes and the DISCONNECT go out
            if client.loop(timeout=_TICK_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        return BrokerDisconnected(0, "stopped")

    def _drain(self, client: paho.Client) -> None:
        while True:
            try:
                generation, topic, payload = self._outgoing.get_nowait()
            except queue.Empty:
                return
            if generation == self._connected_generation == self._generation:
                info = client.publish(topic, payload, qos=_QOS)
                if topic.endswith(_READINGS_SUFFIX):
                    self._readings_mids.add(info.mid)

    # paho callbacks (network thread)

    def _on_connect(self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self._ended = BrokerRefused(reason.value, reason.getName())
            return
        self._takeover.accepted(time.monotonic())
        for topic in self.options.subscriptions:
            client.subscribe(topic, qos=_QOS)
        self._connected_generation = self._generation
        _log.info("connected to the broker (session %d)", self._generation)
        self._post(self._listener.on_connected, self._generation)

    def _on_disconnect(
        self, _c: paho.Client, _u: object, flags: paho.DisconnectFlags, reason: ReasonCode, _p: object
    ) -> None:
        if self._ended is None:
            self._cut = not flags.is_disconnect_packet_from_server and reason.value == _UNSPECIFIED
            self._ended = BrokerDisconnected(reason.value, reason.getName())

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        self._post(self._listener.on_message, message.topic, bytes(message.payload))

    def _on_publish(self, _c: paho.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        readings = mid in self._readings_mids
        self._readings_mids.discard(mid)
        if readings and reason.value == _NO_MATCHING_SUBSCRIBERS:
            # Mosquitto accepted and dropped it: ingest's shared subscription is not there (e.g. a
            # broker restarted without it). No receipt will come; the uplink resends soon.
            self.no_subscribers += 1
            self._post(self._listener.on_no_subscribers)
        if reason.is_failure:
            self.denied += 1
            _log.warning("broker refused a publish (mid %d): 0x%02X %s", mid, reason.value, reason.getName())


def _connect_error(exc: BaseException) -> BrokerError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _chain(BrokerUnreachable(f"TLS certificate rejected ({exc.verify_message})"), exc)
    if isinstance(exc, ssl.SSLError):
        return _chain(BrokerUnreachable(f"TLS failed ({exc.reason})"), exc)
    return _chain(BrokerUnreachable(type(exc).__name__), exc)


def _chain(error: BrokerError, cause: BaseException) -> BrokerError:
    error.__cause__ = cause
    return error
