"""The asyncio shell around :class:`~consult.video.signalling.CallRoom`: connections, join checks, effects.

Transport-independent: the app's WebSocket route (later) and the tests' in-process harness both
implement :class:`Transport` and call :meth:`SignallingHub.connect`, :meth:`SignallingHub.receive`
for each frame, and :meth:`SignallingHub.disconnect` when the transport ends. The hub verifies join
tokens (signature, expiry, room: no database), asks the :class:`~consult.video.rooms.RoomDirectory`
whether the participant still holds that link (one query, in a worker thread), feeds the room's
state machine one event at a time (a lock per room), queues outbound messages per connection (a
slow reader is closed, never waited for), and stores call events and refused joins.

One process holds a room's state: every connection of one room must reach the same process (route by
room id), see docs/video.md. Nothing here logs message contents: ids and codes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from consult.errors import JoinRefused
from consult.video.links import JoinLinkSigner
from consult.video.protocol import Limits, error_message
from consult.video.rooms import RoomDirectory
from consult.video.settings import VideoSettings
from consult.video.signalling import CallRoom, Close, CloseCode, Effect, JoinGrant, Record, RoomPolicy, Send, VerifyJoin
from consult.video.turn import ice_servers
from rpm_core.clock import Clock
from store.consult_rooms import NewCallEvent
from store.errors import StoreError

__all__ = ["HubConnection", "HubStats", "SignallingHub", "Transport", "policy_from_settings"]

log = logging.getLogger(__name__)
_ROOM_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
_Event = Callable[[CallRoom, datetime], list[Effect]]


class Transport(Protocol):
    """One client connection (a WebSocket in the app)."""

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _CloseItem:
    code: int
    reason: str


@dataclass(eq=False)
class HubConnection:
    conn_id: str
    room_id: str
    transport: Transport
    queue: asyncio.Queue[str | _CloseItem]
    writer: asyncio.Task[None] | None = None
    closing: bool = False


@dataclass
class HubStats:
    """Counters for metrics: refused joins by reason, refused messages by code, failures."""

    joins_refused: Counter[str] = field(default_factory=Counter)
    messages_refused: Counter[str] = field(default_factory=Counter)
    joins: int = 0
    internal_errors: int = 0
    record_failures: int = 0
    slow_closed: int = 0


@dataclass
class _Room:
    machine: CallRoom
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conns: dict[str, HubConnection] = field(default_factory=dict)


def policy_from_settings(settings: VideoSettings) -> RoomPolicy:
    return RoomPolicy(
        limits=Limits(
            max_message_bytes=settings.video_max_message_bytes,
            max_sdp_bytes=settings.video_max_sdp_bytes,
            max_chat_chars=settings.video_max_chat_chars,
        ),
        reconnect_grace_s=settings.video_reconnect_grace_s,
        rate_per_s=settings.video_rate_per_s,
        rate_burst=settings.video_rate_burst,
        max_errors=settings.video_max_errors,
    )


class SignallingHub:
    def __init__(
        self,
        *,
        settings: VideoSettings,
        signer: JoinLinkSigner,
        directory: RoomDirectory,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._signer = signer
        self._directory = directory
        self._clock = clock
        self._policy = policy_from_settings(settings)
        self._rooms: dict[str, _Room] = {}
        self._ids = itertools.count(1)
        self.stats = HubStats()

    # ---- the transport's calls -----------------------------------------------------------------

    async def connect(self, room_id: str, transport: Transport) -> HubConnection:
        """Register a new connection to ``room_id`` (the id from the URL); it must send ``join`` next."""
        conn = HubConnection(
            f"c{next(self._ids)}", room_id, transport, asyncio.Queue(maxsize=self._settings.video_send_queue)
        )
        conn.writer = asyncio.create_task(self._write(conn), name=f"video-writer-{conn.conn_id}")
        if _ROOM_ID.fullmatch(room_id) is None:
            self.stats.joins_refused["malformed"] += 1
            self._enqueue(conn, json.dumps(error_message("join-refused", "malformed")))
            self._enqueue(conn, _CloseItem(CloseCode.REFUSED, "join-refused"))
            return conn
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(CallRoom(room_id, policy=self._policy, ice_servers=self._ice))
        room.conns[conn.conn_id] = conn
        await self._step(room, lambda m, now: m.open(conn.conn_id, now))
        return conn

    async def receive(self, conn: HubConnection, raw: str | bytes) -> None:
        """One inbound frame. Never raises: a failure is that frame's (and at worst that connection's)."""
        room = self._rooms.get(conn.room_id)
        if room is None or conn.conn_id not in room.conns:
            return
        await self._step(room, lambda m, now: m.receive(conn.conn_id, raw, now), conn=conn)

    async def disconnect(self, conn: HubConnection) -> None:
        """The transport ended (closed by either side, or lost)."""
        room = self._rooms.get(conn.room_id)
        if room is not None and room.conns.pop(conn.conn_id, None) is not None:
            await self._step(room, lambda m, now: m.closed(conn.conn_id, now))
            self._forget_if_idle(conn.room_id)
        if conn.writer is not None and not conn.writer.done():
            conn.writer.cancel()

    async def evict(self, room_id: str, participant_id: str) -> None:
        """Disconnect a participant the app has just removed from the room (their links are refused)."""
        room = self._rooms.get(room_id)
        if room is not None:
            await self._step(room, lambda m, now: m.evict(participant_id, now))

    async def tick(self) -> None:
        """Expire reconnect graces and join timeouts (call every second or so)."""
        for room_id, room in list(self._rooms.items()):
            await self._step(room, lambda m, now: m.tick(now))
            self._forget_if_idle(room_id)

    async def run_ticks(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.tick()

    async def close(self) -> None:
        """Shut down: every connection is closed (1001, going away) and every writer stopped."""
        for room in list(self._rooms.values()):
            for conn in list(room.conns.values()):
                if conn.writer is not None:
                    conn.writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await conn.writer
                await _close_quietly(conn.transport, CloseCode.GOING_AWAY, "going-away")
        self._rooms.clear()

    def room_count(self) -> int:
        return len(self._rooms)

    # ---- internals -----------------------------------------------------------------------------

    def _ice(self, grant: JoinGrant, now: datetime) -> list[dict[str, Any]]:
        servers = ice_servers(
            self._settings, participant_id=grant.participant_id, now=now, scheduled_end=grant.scheduled_end
        )
        return [s.as_json() for s in servers]

    async def _step(self, room: _Room, event: _Event, *, conn: HubConnection | None = None) -> None:
        try:
            async with room.lock:
                effects = event(room.machine, self._clock.now())
                records, verifies = self._apply(room, effects)
            await self._store(records)
            for verify in verifies:
                await self._verify(room, verify)
        except Exception:
            # A bug handling one frame: close that connection, keep the room and the service.
            self.stats.internal_errors += 1
            log.exception(
                "video signalling failed (room %s, connection %s)", room.machine.room_id, conn and conn.conn_id
            )
            if conn is not None:
                self._enqueue(conn, json.dumps(error_message("internal", "internal error")))
                self._enqueue(conn, _CloseItem(CloseCode.INTERNAL, "internal"))

    def _apply(self, room: _Room, effects: Sequence[Effect]) -> tuple[list[NewCallEvent], list[VerifyJoin]]:
        records: list[NewCallEvent] = []
        verifies: list[VerifyJoin] = []
        for effect in effects:
            if isinstance(effect, Send):
                target = room.conns.get(effect.conn_id)
                if target is not None:
                    if effect.message.get("type") == "error":
                        self.stats.messages_refused[str(effect.message.get("code"))] += 1
                    overflow = self._enqueue(target, json.dumps(effect.message))
                    if overflow:
                        records_more, _ = self._apply(room, room.machine.closed(target.conn_id, self._clock.now()))
                        records += records_more
            elif isinstance(effect, Close):
                target = room.conns.get(effect.conn_id)
                if target is not None:
                    self._enqueue(target, _CloseItem(effect.code, effect.reason))
            elif isinstance(effect, Record):
                records.append(effect.event)
            else:
                verifies.append(effect)
        return records, verifies

    def _enqueue(self, conn: HubConnection, item: str | _CloseItem) -> bool:
        """Queue an outbound item; True if the connection overflowed and was closed as slow."""
        if conn.closing:
            return False
        if isinstance(item, _CloseItem):
            conn.closing = True
        try:
            conn.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.slow_closed += 1
            conn.closing = True
            if conn.writer is not None:
                conn.writer.cancel()
            asyncio.get_running_loop().create_task(_close_quietly(conn.transport, CloseCode.SLOW, "slow"))
            return True
        return False

    async def _write(self, conn: HubConnection) -> None:
        try:
            while True:
                item = await conn.queue.get()
                if isinstance(item, _CloseItem):
                    await _close_quietly(conn.transport, item.code, item.reason)
                    return
                await conn.transport.send_text(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # the transport is gone: the reader side reports the disconnect
            log.info("video connection %s: send failed", conn.conn_id, exc_info=True)

    async def _verify(self, room: _Room, verify: VerifyJoin) -> None:
        now = self._clock.now()
        room_id = room.machine.room_id
        try:
            claims = self._signer.verify(verify.token, room_id=room_id, now=now)
            grant = await asyncio.to_thread(self._directory.grant, claims)
        except JoinRefused as refused:
            await self._refuse(room, verify.conn_id, refused.why, refused.participant_id, now)
            return
        except StoreError:
            log.warning("video join check failed: database unavailable (room %s)", room_id, exc_info=True)
            await self._refuse(room, verify.conn_id, "unavailable", None, now, record=False)
            return
        self.stats.joins += 1
        await self._step(room, lambda m, t: m.join_verified(verify.conn_id, grant, t, resume=verify.resume))

    async def _refuse(
        self, room: _Room, conn_id: str, why: str, participant_id: str | None, now: datetime, *, record: bool = True
    ) -> None:
        self.stats.joins_refused[why] += 1
        log.info("video join refused: %s (room %s)", why, room.machine.room_id)
        await self._step(room, lambda m, t: m.join_refused(conn_id, why, t))
        if record:
            try:
                await asyncio.to_thread(
                    self._directory.refused,
                    at=now,
                    room_id=room.machine.room_id,
                    participant_id=participant_id,
                    why=why,
                )
            except StoreError:
                self.stats.record_failures += 1
                log.warning("video: could not record a refused join (room %s)", room.machine.room_id)

    async def _store(self, records: list[NewCallEvent]) -> None:
        if not records:
            return
        try:
            await asyncio.to_thread(self._directory.record, records)
        except StoreError:
            self.stats.record_failures += 1
            log.warning("video: could not store %d call events", len(records), exc_info=True)

    def _forget_if_idle(self, room_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is not None and not room.conns and room.machine.is_idle and not room.lock.locked():
            del self._rooms[room_id]


async def _close_quietly(transport: Transport, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await transport.close(code, reason)
