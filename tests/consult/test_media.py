"""Machine to machine: two aiortc peers signalling through the real hub with real join links and a real
database; media both ways directly on loopback, then relayed through a real coturn only.

Host candidates are restricted to 127.0.0.1 (the only address tests may send to), and every ICE
server list is explicit, so nothing leaves the machine. Waits are bounded waits on positive signals
(frames counted, messages received); nothing is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import aioice.ice
import psycopg
import pytest
from aioice import stun, turn

from consult.video.hub import SignallingHub
from consult.video.links import JoinLinkSigner
from consult.video.rooms import PgRoomDirectory
from consult.video.settings import VideoSettings
from consult.video.signalling import CloseCode
from consult.video.turn import turn_credential
from rpm_core.clock import ManualClock, SystemClock
from store.consult_rooms import call_events
from tests.consult.conftest import Consult, link, make_settings, open_consult
from tests.consult.harness import LoopbackClient
from tests.consult.peers import VideoPeer
from tests.support.coturn import CoturnProcess, find_turnserver


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE host candidates on 127.0.0.1 only (aioice skips loopback by default and would use eth0)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[CoturnProcess]:
    if find_turnserver() is None:
        pytest.fail("coturn is not installed: run ./run.sh setup (apt-get install coturn)")
    server = CoturnProcess(tmp_path / "coturn")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Call:
    def __init__(self, db: str, conn: psycopg.Connection, settings: VideoSettings, clock=None) -> None:
        self.conn = conn
        self.settings = settings
        self.signer = JoinLinkSigner.from_settings(settings)
        self.clock = clock or SystemClock()
        self.hub = SignallingHub(
            settings=settings,
            signer=self.signer,
            directory=PgRoomDirectory(lambda: psycopg.connect(db, autocommit=True)),
            clock=self.clock,
        )
        self.consult: Consult = open_consult(conn, at=self.clock.now())

    def link(self, who, consult: Consult | None = None) -> str:
        consult = consult or self.consult
        return link(self.signer, self.settings, consult, who, self.clock.now())

    async def client(self, name: str, room_id: str | None = None) -> LoopbackClient:
        return await LoopbackClient(self.hub, room_id or self.consult.room.room_id, name).connect()


async def _run_call(call: Call, *, relay_only: bool) -> tuple[VideoPeer, VideoPeer]:
    """Clinician joins, patient waits (no offer reaches them), clinician admits, media both ways."""
    c = call.consult
    doc_client = await call.client("doc")
    assert (await doc_client.join(call.link(c.clinician)))["state"] == "in-call"
    doc = VideoPeer(doc_client, relay_only=relay_only)
    doc.start()

    pat_client = await call.client("pat")
    assert (await pat_client.join(call.link(c.patient)))["state"] == "waiting"
    pat = VideoPeer(pat_client, relay_only=relay_only)
    pat.start()
    await doc.wait_for(lambda: any(w["waiting"] for w in doc_client.seen("waiting-room")), "the waiting patient")

    # The clinician tries to negotiate with the waiting patient: refused, nothing reaches the patient.
    await doc_client.send({"type": "offer", "to": c.patient.participant_id, "sdp": "v=0\r\n", "ref": "early"})
    await doc.wait_for(lambda: any(e.get("ref") == "early" for e in doc.errors), "the refusal of the early offer")
    assert doc.errors[-1]["code"] == "peer-not-admitted"
    await pat_client.send({"type": "ping"})
    await pat.wait_for(lambda: pat_client.seen("pong"), "the patient's pong")
    assert pat.offers_received == 0
    assert pat_client.seen("offer") == []
    assert pat.pcs == {}

    await doc_client.send({"type": "admit", "participant_id": c.patient.participant_id})
    await pat.wait_frames(c.clinician.participant_id)
    await doc.wait_frames(c.patient.participant_id)
    # The first offer the patient ever received came after its admission.
    kinds = [m["type"] for m in pat_client.history]
    assert kinds.index("admitted") < kinds.index("offer")
    return doc, pat


@pytest.mark.asyncio
@pytest.mark.slow
async def test_two_peers_media_both_ways_through_the_waiting_room(db: str, conn, loopback_only) -> None:
    call = Call(db, conn, make_settings())
    doc, pat = await _run_call(call, relay_only=False)
    try:
        assert doc.selected_candidate_types(call.consult.patient.participant_id) == ("host", "host")
        # A third client holding a valid link for another room is refused here.
        other = open_consult(conn, patient_id="patient-2", clinician="dr-b", at=call.clock.now())
        intruder = await call.client("intruder")
        reply = await intruder.join(call.link(other.patient, other))
        assert (reply["type"], reply["message"]) == ("error", "wrong_room")
        assert await intruder.wait_closed() == (CloseCode.REFUSED, "join-refused")

        # In-call chat, and a network blip of the patient's signalling: the room and media survive.
        await pat.client.drop()
        back = await call.client("pat-back")
        assert (await back.join(call.link(call.consult.patient), resume=True))["state"] == "in-call"
        await back.send({"type": "chat", "text": "still see me?"})
        await doc.wait_for(lambda: doc.client.seen("chat"), "the chat message")
        before = pat.video_frames[call.consult.clinician.participant_id]
        await pat.wait_frames(call.consult.clinician.participant_id, before + 10)
        await back.send({"type": "leave"})
        await doc.wait_for(lambda: doc.client.seen("peer-left"), "the patient leaving")
    finally:
        await doc.close()
        await pat.close()
    kinds = [e.kind for e in await asyncio.to_thread(call_events, conn, call.consult.room.room_id)]
    assert kinds == ["joined", "joined", "admitted", "disconnected", "resumed", "left"]


@pytest.mark.asyncio
@pytest.mark.slow
async def test_two_peers_relayed_only_through_coturn_with_minted_credentials(
    db: str, conn, loopback_only, coturn: CoturnProcess
) -> None:
    settings = make_settings(video_turn_urls=(coturn.url,), video_turn_secret=coturn.secret)
    call = Call(db, conn, settings)
    c = call.consult
    doc, pat = await _run_call(call, relay_only=True)
    try:
        assert doc.selected_candidate_types(c.patient.participant_id) == ("relay", "relay")
        assert pat.selected_candidate_types(c.clinician.participant_id) == ("relay", "relay")
    finally:
        await doc.close()
        await pat.close()
    log = coturn.log()
    for participant in (c.clinician, c.patient):
        assert f":{participant.participant_id}>: incoming packet ALLOCATE processed, success" in log


async def _allocate(server: CoturnProcess, username: str, credential: str) -> None:
    transport, _ = await turn.create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", server.port), username, credential
    )
    transport.close()


@pytest.mark.asyncio
async def test_coturn_accepts_the_minted_credentials_and_refuses_them_once_expired(
    db: str, conn, coturn: CoturnProcess
) -> None:
    """The credentials a participant receives on admission, used as a TURN client uses them."""
    settings = make_settings(video_turn_urls=(coturn.url,), video_turn_secret=coturn.secret, video_turn_ttl_s=600)
    for clock, should_work in ((SystemClock(), True), (ManualClock(SystemClock().now() - timedelta(days=1)), False)):
        call = Call(db, conn, settings, clock=clock)
        doc = await call.client("doc")
        joined = await doc.join(call.link(call.consult.clinician))
        (server,) = joined["ice_servers"]
        assert server["urls"] == [coturn.url]
        if should_work:
            await _allocate(coturn, server["username"], server["credential"])
        else:
            with pytest.raises(stun.TransactionFailed) as refused:
                await _allocate(coturn, server["username"], server["credential"])
            assert refused.value.response.attributes["ERROR-CODE"][0] == 401
        await doc.send({"type": "end-call"})
        await doc.wait_closed()
    # An unexpired credential made with another secret never works either.
    forged = turn_credential(b"not-the-server-secret-" * 2, "intruder-1", SystemClock().now() + timedelta(hours=1))
    with pytest.raises(stun.TransactionFailed) as refused:
        await _allocate(coturn, forged.username, forged.credential)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401
