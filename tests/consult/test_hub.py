"""The signalling hub with real join links and real PostgreSQL: the waiting room, hostile joins
(refused and recorded), reconnect, eviction, call events and consult status, and failure containment."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import psycopg
import pytest

from consult.errors import JoinRefused
from consult.video import rooms
from consult.video.hub import SignallingHub
from consult.video.links import JoinClaims, JoinLinkSigner
from consult.video.rooms import PgRoomDirectory
from consult.video.settings import VideoSettings
from consult.video.signalling import CloseCode, JoinGrant
from rpm_core.clock import ManualClock
from store.consult_rooms import NewCallEvent, call_events, get_room, join_refusals, participant_seconds
from store.consults import get_consult_request
from store.errors import DatabaseUnavailable
from tests.consult.conftest import T0, Consult, link, make_settings, open_consult
from tests.consult.harness import LoopbackClient

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"


class Env:
    def __init__(self, db: str, conn: psycopg.Connection, settings: VideoSettings | None = None) -> None:
        self.conn = conn
        self.settings = settings or make_settings(video_reconnect_grace_s=30)
        self.signer = JoinLinkSigner.from_settings(self.settings)
        self.clock = ManualClock(T0)
        self.directory = PgRoomDirectory(lambda: psycopg.connect(db, autocommit=True))
        self.hub = SignallingHub(settings=self.settings, signer=self.signer, directory=self.directory, clock=self.clock)

    def link(self, consult: Consult, who) -> str:
        return link(self.signer, self.settings, consult, who, self.clock.now())

    async def client(self, consult_or_room: Consult | str, name: str) -> LoopbackClient:
        room_id = consult_or_room if isinstance(consult_or_room, str) else consult_or_room.room.room_id
        return await LoopbackClient(self.hub, room_id, name).connect()


@pytest.fixture
def env(db: str, conn: psycopg.Connection) -> Env:
    return Env(db, conn)


async def _in_call(env: Env, consult: Consult) -> tuple[LoopbackClient, LoopbackClient]:
    doc = await env.client(consult, "doc")
    assert (await doc.join(env.link(consult, consult.clinician)))["state"] == "in-call"
    pat = await env.client(consult, "pat")
    assert (await pat.join(env.link(consult, consult.patient)))["state"] == "waiting"
    await doc.recv("waiting-room")
    await doc.send({"type": "admit", "participant_id": consult.patient.participant_id})
    await pat.recv("admitted")
    await doc.recv("peer-joined")
    return doc, pat


async def _db(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.mark.asyncio
async def test_waiting_room_relay_and_call_events_through_the_hub(env: Env) -> None:
    consult = open_consult(env.conn)
    doc = await env.client(consult, "doc")
    joined = await doc.join(env.link(consult, consult.clinician))
    assert (joined["state"], joined["role"], joined["participant_id"]) == (
        "in-call",
        "clinician",
        consult.clinician.participant_id,
    )
    status = await _db(lambda: get_consult_request(env.conn, consult.request_id).status)
    assert status == "in_progress"  # the first person in the call starts the consult

    pat = await env.client(consult, "pat")
    assert (await pat.join(env.link(consult, consult.patient)))["state"] == "waiting"
    await doc.recv("waiting-room")
    await doc.send({"type": "offer", "to": consult.patient.participant_id, "sdp": SDP, "ref": "r1"})
    assert (await doc.recv("error"))["code"] == "peer-not-admitted"
    await pat.send({"type": "ping"})
    await pat.recv("pong")  # the patient's inbox is drained up to here: no offer reached it
    assert pat.seen("offer") == []

    env.clock.advance(20)
    await doc.send({"type": "admit", "participant_id": consult.patient.participant_id})
    await pat.recv("admitted")
    await doc.recv("peer-joined")
    await doc.send({"type": "offer", "to": consult.patient.participant_id, "sdp": SDP})
    assert (await pat.recv("offer"))["from"] == consult.clinician.participant_id
    await pat.send({"type": "answer", "to": consult.clinician.participant_id, "sdp": SDP})
    assert (await doc.recv("answer"))["sdp"] == SDP
    await pat.send({"type": "chat", "text": "my ankle is swollen"})
    assert (await doc.recv("chat"))["text"] == "my ankle is swollen"

    env.clock.advance(300)
    await doc.send({"type": "end-call"})
    assert await pat.wait_closed() == (CloseCode.ENDED, "ended")
    assert await doc.wait_closed() == (CloseCode.ENDED, "ended")

    events = await _db(call_events, env.conn, consult.room.room_id)
    assert [(e.participant_id, e.kind) for e in events] == [
        (consult.clinician.participant_id, "joined"),
        (consult.patient.participant_id, "joined"),
        (consult.patient.participant_id, "admitted"),
        (consult.clinician.participant_id, "left"),
        (consult.patient.participant_id, "left"),
        (consult.clinician.participant_id, "ended"),
    ]
    seconds = await _db(participant_seconds, env.conn, consult.room.room_id)
    assert seconds == {consult.clinician.participant_id: 320.0, consult.patient.participant_id: 300.0}
    room = await _db(get_room, env.conn, consult.room.room_id)
    assert (room.status, room.started_at, room.ended_at) == ("ended", T0, T0 + timedelta(seconds=320))
    assert (await _db(get_consult_request, env.conn, consult.request_id)).status == "completed"

    late = await env.client(consult, "late")
    assert (await late.join(env.link(consult, consult.clinician)))["message"] == "room_closed"


@pytest.mark.asyncio
async def test_hostile_joins_are_refused_recorded_and_leave_the_call_alone(env: Env) -> None:
    consult = open_consult(env.conn)
    other = open_consult(env.conn, patient_id="patient-2", clinician="dr-b")
    doc, pat = await _in_call(env, consult)
    genuine = env.link(consult, consult.patient)

    async def attempt(token: str, room: str = consult.room.room_id) -> str:
        intruder = await env.client(room, "intruder")
        reply = await intruder.join(token)
        assert reply["type"] == "error"
        assert await intruder.wait_closed() == (CloseCode.REFUSED, "join-refused")
        return reply["message"]

    tampered = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")
    assert await attempt(tampered) == "bad_signature"
    # A third client with a valid link for another room.
    assert await attempt(env.link(other, other.patient)) == "wrong_room"
    assert await attempt(env.link(consult, consult.patient), room=other.room.room_id) == "wrong_room"
    assert await attempt("v1.garbage") == "malformed"
    env.clock.advance(5 * 3600)  # past the link's lifetime (video_link_ttl_s = 4 h)
    assert await attempt(genuine) == "expired"

    refusals = await _db(join_refusals, env.conn)
    assert [r.reason for r in refusals] == ["bad_signature", "wrong_room", "wrong_room", "malformed", "expired"]
    assert dict(env.hub.stats.joins_refused) == {"bad_signature": 1, "wrong_room": 2, "malformed": 1, "expired": 1}
    # The call was not disturbed: chat still flows between the two genuine participants.
    await pat.send({"type": "chat", "text": "still here"})
    assert (await doc.recv("chat"))["text"] == "still here"
    assert doc.seen("peer-joined")[-1]["peer"]["participant_id"] == consult.patient.participant_id


@pytest.mark.asyncio
async def test_a_removed_participant_is_evicted_and_their_link_replayed_is_refused(env: Env) -> None:
    consult = open_consult(env.conn)
    family = await _db(
        rooms.invite,
        env.conn,
        room_id=consult.room.room_id,
        role="family",
        user_id=None,
        guest_label="Son",
        added_by="dr-a",
        at=T0,
    )
    doc, _pat = await _in_call(env, consult)
    fam_link = env.link(consult, family)
    fam = await env.client(consult, "fam")
    assert (await fam.join(fam_link))["state"] == "waiting"
    await doc.send({"type": "admit", "participant_id": family.participant_id})
    await fam.recv("admitted")

    await _db(rooms.remove, env.conn, family.participant_id, removed_by="dr-a", at=T0)
    await env.hub.evict(consult.room.room_id, family.participant_id)
    assert await fam.wait_closed() == (CloseCode.REFUSED, "removed")
    left = await doc.recv("peer-left")
    assert (left["participant_id"], left["reason"]) == (family.participant_id, "removed")

    replay = await env.client(consult, "replay")
    assert (await replay.join(fam_link))["message"] == "removed"
    # The patient's own link cannot be used to act as the clinician: the role comes from the database.
    pat2 = await env.client(consult, "pat2")
    assert (await pat2.join(env.link(consult, consult.patient)))["role"] == "patient"
    await pat2.send({"type": "end-call"})
    assert (await pat2.recv("error"))["code"] == "forbidden"


@pytest.mark.asyncio
async def test_a_blip_within_the_grace_keeps_the_room_and_after_it_the_seat_is_gone(env: Env) -> None:
    consult = open_consult(env.conn)
    doc, pat = await _in_call(env, consult)
    token = env.link(consult, consult.patient)
    await pat.drop()
    assert (await doc.recv("peer-reconnecting"))["participant_id"] == consult.patient.participant_id
    env.clock.advance(29)
    await env.hub.tick()
    back = await env.client(consult, "pat-back")
    rejoined = await back.join(token, resume=True)
    assert (rejoined["state"], rejoined["resumed"]) == ("in-call", True)
    assert (await doc.recv("peer-reconnected"))["participant_id"] == consult.patient.participant_id
    await back.send({"type": "chat", "text": "back"})
    assert (await doc.recv("chat"))["text"] == "back"

    await back.drop()
    env.clock.advance(30)
    await env.hub.tick()
    assert (await doc.recv("peer-left"))["reason"] == "timeout"
    again = await env.client(consult, "pat-again")
    assert (await again.join(token))["state"] == "waiting"  # a new admission is needed now
    kinds = [e.kind for e in await _db(call_events, env.conn, consult.room.room_id)]
    assert kinds.count("disconnected") == 2
    assert kinds.count("resumed") == 1


@pytest.mark.asyncio
async def test_hostile_frames_through_the_hub_never_raise(env: Env) -> None:
    consult = open_consult(env.conn)
    doc, pat = await _in_call(env, consult)
    frames: list[str | bytes] = [
        b"\x00" * 100,
        "x" * (env.settings.video_max_message_bytes + 1),
        '{"type": "offer", "to": "' + consult.patient.participant_id + '", "sdp": "v=0' + "a" * 40_000 + '"}',
        '{"type":"ice-candidate","to":"' + consult.patient.participant_id + '","candidate":{"candidate":1}}',
        '{"type":"offer","to":"../../etc","sdp":"v=0"}',
        "[" * 100_000,
        '{"type":"join","v":1,"token":"again"}',
    ]
    for frame in frames:
        await doc.send(frame)
    await doc.send({"type": "ping"})
    await doc.recv("pong")  # every earlier reply has been delivered (one ordered queue per connection)
    codes = [m["code"] for m in doc.seen("error")]
    assert codes == [
        "invalid-json",
        "too-large",
        "too-large",
        "invalid-message",
        "invalid-message",
        "too-large",
        "already-joined",
    ]
    assert env.hub.stats.internal_errors == 0
    await doc.send({"type": "chat", "text": "ok"})
    assert (await pat.recv("chat"))["text"] == "ok"

    for bad_room in ("", "x", "../" * 10, "a" * 65):
        c = await env.client(bad_room, "bad")
        assert (await c.recv("error"))["code"] == "join-refused"
        assert await c.wait_closed() == (CloseCode.REFUSED, "join-refused")
    assert env.hub.room_count() == 1


class _BrokenDirectory:
    """A directory failing at the seam: a bug (RuntimeError) or an outage (DatabaseUnavailable)."""

    def __init__(self, inner: PgRoomDirectory) -> None:
        self.inner = inner
        self.fail: type[Exception] | None = None

    def grant(self, claims: JoinClaims) -> JoinGrant:
        if self.fail is not None:
            raise self.fail("injected")
        return self.inner.grant(claims)

    def record(self, events: Sequence[NewCallEvent]) -> None:
        self.inner.record(events)

    def refused(self, **kwargs) -> None:
        self.inner.refused(**kwargs)


@pytest.mark.asyncio
async def test_a_failure_while_joining_costs_that_connection_only(db: str, conn: psycopg.Connection) -> None:
    env = Env(db, conn)
    broken = _BrokenDirectory(env.directory)
    env.hub = SignallingHub(settings=env.settings, signer=env.signer, directory=broken, clock=env.clock)
    consult = open_consult(conn)
    doc, pat = await _in_call(env, consult)

    broken.fail = DatabaseUnavailable
    c = await env.client(consult, "outage")
    assert (await c.join(env.link(consult, consult.patient)))["message"] == "unavailable"
    broken.fail = RuntimeError
    c2 = await env.client(consult, "bug")
    assert (await c2.join(env.link(consult, consult.patient)))["code"] == "internal"
    assert await c2.wait_closed() == (CloseCode.INTERNAL, "internal")
    assert env.hub.stats.internal_errors == 1
    assert env.hub.stats.joins_refused["unavailable"] == 1
    assert [r.reason for r in await _db(join_refusals, conn)] == []  # an outage is not an attack

    await doc.send({"type": "chat", "text": "still working"})
    assert (await pat.recv("chat"))["text"] == "still working"


def test_join_refused_carries_its_reason_and_no_token() -> None:
    exc = JoinRefused("expired", room_id="r" * 22, participant_id="p" * 12)
    assert (exc.why, exc.reason) == ("expired", "join_refused")
    assert "v1." not in str(exc)


@pytest.mark.asyncio
async def test_shutting_the_hub_down_closes_every_connection_as_going_away(env: Env) -> None:
    consult = open_consult(env.conn)
    doc, pat = await _in_call(env, consult)
    await env.hub.close()
    assert await doc.wait_closed() == (CloseCode.GOING_AWAY, "going-away")
    assert await pat.wait_closed() == (CloseCode.GOING_AWAY, "going-away")
    assert env.hub.room_count() == 0
