"""A small MQTT 5 client for many simulated agents in one process (the ingest benchmark's publishers).

One :class:`AgentConnection` per agent: an ``asyncio.Protocol`` over ``loop.create_connection``
with TLS, so a publisher process holds thousands of connections on one event loop (epoll)
instead of a paho client and a network thread per connection. It speaks exactly what a Vigil
agent does on the wire: CONNECT (clean start, username + password, keep-alive), SUBSCRIBE to its
receipts at QoS 1, PUBLISH at QoS 1, PUBACK for the receipts it receives, PINGREQ, DISCONNECT.
Nothing else (no will, no topic aliases, no QoS 2): the broker, ingest and the database are what
the benchmark measures, and this client keeps its own cost per message small and visible. The
benchmark's smoke test (tests/bench/test_ingest_bench.py) runs it against the real rendered
Mosquitto (TLS, passwords, ACLs), which is its conformance check.

asyncio's TLS transport allocates a 256 KiB read buffer per connection (``SSLProtocol.max_size``);
:func:`small_tls_buffers` lowers it to 32 KiB for this process (TLS records are at most 16 KiB),
or 10,000 connections would hold 2.5 GB.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AgentConnection",
    "ConnectRefused",
    "MqttProtocolError",
    "PubackStats",
    "client_context",
    "connect_agent",
    "small_tls_buffers",
]

CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
PINGREQ: Final = b"\xc0\x00"
PINGRESP: Final = 0xD0
DISCONNECT_PACKET: Final = b"\xe0\x00"
DISCONNECT: Final = 0xE0


class MqttProtocolError(Exception):
    """The broker sent something this client does not expect (``.what``)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class ConnectRefused(Exception):
    """CONNACK or SUBACK with a failure reason code (``.reason_code``)."""

    def __init__(self, packet: str, reason_code: int) -> None:
        super().__init__(f"{packet} refused: 0x{reason_code:02X}")
        self.packet = packet
        self.reason_code = reason_code


def small_tls_buffers(size: int = 32 * 1024) -> None:
    asyncio.sslproto.SSLProtocol.max_size = size


def client_context(cafile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def connect_packet(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    flags = 0xC2  # username, password, clean start
    body = b"\x00\x04MQTT\x05" + bytes((flags,)) + keepalive.to_bytes(2, "big") + b"\x00"
    body += _str(client_id.encode()) + _str(username.encode()) + _str(password.encode())
    return _packet(CONNECT, body)


def subscribe_packet(packet_id: int, topic: str) -> bytes:
    return _packet(SUBSCRIBE, packet_id.to_bytes(2, "big") + b"\x00" + _str(topic.encode()) + b"\x01")


def publish_header(topic: bytes, packet_id: int, payload_len: int) -> bytes:
    """PUBLISH, QoS 1, no properties: everything before the payload."""
    rest = len(topic) + 2 + 2 + 1 + payload_len
    return bytes((PUBLISH | 0x02,)) + varint(rest) + _str(topic) + packet_id.to_bytes(2, "big") + b"\x00"


@dataclass(slots=True)
class PubackStats:
    """PUBACKs one process received: all, refused (reason >= 0x80), and 0x10 "No matching
    subscribers" (the broker accepted the message and delivered it to nobody)."""

    pubacks: int = 0
    refused: int = 0
    unrouted: int = 0


class AgentConnection(asyncio.Protocol):
    """One agent's MQTT session. ``on_message(topic, payload)`` gets every PUBLISH the broker sends
    (already acknowledged); ``on_lost(exc)`` is called once when the connection ends;
    ``on_unrouted()`` on every PUBACK 0x10 (no matching subscribers)."""

    def __init__(
        self,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[Exception | None], None],
        stats: PubackStats,
        on_unrouted: Callable[[], None] | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_unrouted = on_unrouted
        self._buf = bytearray()
        self._next_id = 0
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stats = stats
        self.last_write = time.monotonic()
        self.closed = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        while (header := _fixed_header(buf, pos, end)) is not None:
            start, length = header
            if end - start < length:
                break
            self._packet(buf[pos], bytes(buf[start : start + length]))
            pos = start + length
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(exc or ConnectionResetError("connection closed"))
        self._on_lost(exc)

    # packets

    def _packet(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBLISH:
            self._publish(first, body)
        elif kind == PUBACK:
            self._puback(body)
        elif kind == CONNACK:
            if not self.connack.done():
                self.connack.set_result(body[1])
        elif kind == SUBACK:
            props, i = _varint_at(body, 2)
            if not self.suback.done():
                self.suback.set_result(body[i + props])
        elif kind == PINGRESP:
            pass
        elif kind == DISCONNECT:
            if self.transport is not None:
                self.transport.close()
        else:
            raise MqttProtocolError(f"unexpected packet 0x{first:02X}")

    def _puback(self, body: bytes) -> None:
        self.stats.pubacks += 1
        reason = body[2] if len(body) > 2 else 0
        if reason >= 0x80:
            self.stats.refused += 1
        elif reason == 0x10:
            self.stats.unrouted += 1
            if self._on_unrouted is not None:
                self._on_unrouted()

    def _publish(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 0x03
        n = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + n]
        i = 2 + n
        if qos:
            packet_id = body[i : i + 2]
            i += 2
            if self.transport is not None:
                self.transport.write(b"\x40\x02" + packet_id)
        props, i = _varint_at(body, i)
        self._on_message(topic, body[i + props :])

    # sending

    def packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def publish(self, topic: bytes, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(publish_header(topic, self.packet_id(), len(payload)) + payload)
        self.last_write = time.monotonic()

    def ping(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(PINGREQ)
            self.last_write = time.monotonic()

    def disconnect(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(DISCONNECT_PACKET)
            self.transport.close()


def _fixed_header(buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """Where the body of the packet at ``pos`` starts and its length; None while incomplete."""
    length, shift, i = 0, 0, pos + 1
    while i < end:
        byte = buf[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return i, length
        shift += 7
        if shift > 21:
            raise MqttProtocolError("remaining length longer than 4 bytes")
    return None


def _varint_at(body: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = body[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7


def _refused_if(packet: str, reason_code: int, failed: Callable[[int], bool]) -> None:
    if failed(reason_code):
        raise ConnectRefused(packet, reason_code)


async def connect_agent(
    *,
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    server_name: str,
    client_id: str,
    username: str,
    password: str,
    subscribe: str,
    keepalive: int,
    timeout_s: float,
    on_message: Callable[[bytes, bytes], None],
    on_lost: Callable[[Exception | None], None],
    stats: PubackStats,
    on_unrouted: Callable[[], None] | None = None,
) -> AgentConnection:
    """TCP + TLS + CONNECT + SUBSCRIBE (QoS 1); raises OSError, TimeoutError, ssl.SSLError or ConnectRefused."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        _, conn = await loop.create_connection(
            lambda: AgentConnection(on_message, on_lost, stats, on_unrouted),
            host,
            port,
            ssl=ctx,
            server_hostname=server_name,
        )
        try:
            assert conn.transport is not None
            conn.transport.write(connect_packet(client_id, username, password, keepalive))
            _refused_if("CONNACK", await conn.connack, lambda rc: rc != 0)
            conn.transport.write(subscribe_packet(conn.packet_id(), subscribe))
            _refused_if("SUBACK", await conn.suback, lambda rc: rc >= 0x80)
        except BaseException:
            conn.disconnect()
            if conn.transport is not None:
                conn.transport.abort()
            raise
    return conn
