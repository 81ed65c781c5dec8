"""A WebRTC participant for the machine-to-machine tests: aiortc peer connections driven by the
signalling messages a :class:`LoopbackClient` receives from the real hub.

It follows the protocol as a browser page will: ICE servers from ``joined``/``admitted``; on
``peer-joined`` it creates a connection to the newcomer and offers; on ``offer`` it answers; frames
received per peer are counted. Sources are aiortc's test tracks (a small black video, silence).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import VideoFrame

from tests.consult.harness import WAIT_S, LoopbackClient

__all__ = ["SmallVideoTrack", "VideoPeer"]


class SmallVideoTrack(VideoStreamTrack):
    """aiortc's test video source at 160x120 (cheap to encode on a shared 2-core machine)."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = pts
        frame.time_base = time_base
        return frame


class VideoPeer:
    def __init__(self, client: LoopbackClient, *, relay_only: bool = False) -> None:
        self.client = client
        self.relay_only = relay_only
        self.ice_servers: list[RTCIceServer] = []
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.video_frames: dict[str, int] = {}
        self.audio_frames: dict[str, int] = {}
        self.errors: list[dict[str, Any]] = []
        self.offers_received = 0
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def participant_id(self) -> str:
        return str(self.client.seen("joined")[-1]["participant_id"])

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-{self.client.name}")

    async def close(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                    await task
        for pc in self.pcs.values():
            await pc.close()

    async def wait_for(self, predicate, what: str) -> None:
        """Bounded wait for a positive signal."""
        try:
            async with asyncio.timeout(WAIT_S * 3), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"{self.client.name}: timed out waiting for {what}") from None

    async def wait_frames(self, peer_id: str, n: int = 10) -> None:
        await self.wait_for(
            lambda: self.video_frames.get(peer_id, 0) >= n and self.audio_frames.get(peer_id, 0) >= n,
            f"{n} video and audio frames from {peer_id}",
        )

    def selected_candidate_types(self, peer_id: str) -> tuple[str, str]:
        """(local, remote) candidate types of the nominated ICE pair towards ``peer_id``."""
        pc = self.pcs[peer_id]
        ice = pc.getTransceivers()[0].receiver.transport.transport
        pair = ice._connection._nominated[1]  # aioice's nominated pair of component 1
        return pair.local_candidate.type, pair.remote_candidate.type

    # ---- signalling ----------------------------------------------------------------------------

    def _config(self) -> RTCConfiguration:
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        # An explicit (possibly empty) list: aiortc would otherwise use a public STUN server.
        return RTCConfiguration(iceServers=list(self.ice_servers), iceTransportPolicy=policy)

    def _set_ice(self, servers: list[dict[str, Any]]) -> None:
        self.ice_servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")) for s in servers
        ]

    def _connection(self, peer_id: str) -> RTCPeerConnection:
        old = self.pcs.pop(peer_id, None)
        if old is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(old.close()))
        pc = RTCPeerConnection(self._config())
        pc.addTrack(SmallVideoTrack())
        pc.addTrack(AudioStreamTrack())

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._count(peer_id, track)))

        self.pcs[peer_id] = pc
        return pc

    async def _count(self, peer_id: str, track: MediaStreamTrack) -> None:
        counter = self.video_frames if track.kind == "video" else self.audio_frames
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                counter[peer_id] = counter.get(peer_id, 0) + 1
                async with self._changed:
                    self._changed.notify_all()

    async def _run(self) -> None:
        joined = self.client.seen("joined")
        if joined and "ice_servers" in joined[-1]:
            self._set_ice(joined[-1]["ice_servers"])
        while True:
            msg = await self.client.inbox.get()
            await self._handle(msg)
            async with self._changed:
                self._changed.notify_all()

    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "admitted":
            self._set_ice(msg["ice_servers"])
        elif kind == "peer-joined":
            peer_id = msg["peer"]["participant_id"]
            pc = self._connection(peer_id)
            await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers all candidates here
            await self.client.send({"type": "offer", "to": peer_id, "sdp": pc.localDescription.sdp})
        elif kind == "offer":
            self.offers_received += 1
            peer_id = msg["from"]
            pc = self._connection(peer_id)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await self.client.send({"type": "answer", "to": peer_id, "sdp": pc.localDescription.sdp})
        elif kind == "answer":
            await self.pcs[msg["from"]].setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
        elif kind == "error":
            self.errors.append(msg)
