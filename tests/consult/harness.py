"""An in-process stand-in for the WebSocket: each client is a :class:`Transport` of the real hub.

Frames go through ``json.dumps`` and the hub's real parsing, the hub's queues and writer tasks; the
only thing missing is the socket. A server-side close ends the client like a WebSocket close frame
would (and the hub hears the disconnect, as the app's route will tell it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from consult.video.hub import HubConnection, SignallingHub

__all__ = ["LoopbackClient"]

WAIT_S = 20.0


class LoopbackClient:
    def __init__(self, hub: SignallingHub, room_id: str, name: str) -> None:
        self.hub = hub
        self.room_id = room_id
        self.name = name
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.history: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.conn: HubConnection | None = None
        self._closed_event = asyncio.Event()

    # Transport (the hub's side)
    async def send_text(self, text: str) -> None:
        msg = json.loads(text)
        self.history.append(msg)
        self.inbox.put_nowait(msg)

    async def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
            self._closed_event.set()
            if self.conn is not None:
                asyncio.get_running_loop().create_task(self.hub.disconnect(self.conn))

    # The client's side
    async def connect(self) -> LoopbackClient:
        self.conn = await self.hub.connect(self.room_id, self)
        return self

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        assert self.conn is not None
        raw = msg if isinstance(msg, str | bytes) else json.dumps(msg)
        await self.hub.receive(self.conn, raw)

    async def join(self, token: str, *, resume: bool = False) -> dict[str, Any]:
        await self.send({"type": "join", "v": 1, "token": token, "resume": resume})
        return await self.recv("joined", "error")

    async def recv(self, *types: str) -> dict[str, Any]:
        """The next message of one of ``types`` (others stay in ``history``); bounded wait."""
        async with asyncio.timeout(WAIT_S):
            while True:
                msg = await self.inbox.get()
                if not types or msg["type"] in types:
                    return msg

    async def wait_closed(self) -> tuple[int, str]:
        async with asyncio.timeout(WAIT_S):
            await self._closed_event.wait()
        assert self.closed is not None
        return self.closed

    async def drop(self) -> None:
        """The network goes away under the client (no leave, no close frame)."""
        assert self.conn is not None
        self.closed = (1006, "dropped")
        await self.hub.disconnect(self.conn)

    def seen(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.history if m["type"] == kind]
