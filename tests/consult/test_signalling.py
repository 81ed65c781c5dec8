"""The room's state machine, driven directly (pure: no I/O, time passed in)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consult.video.protocol import Limits
from consult.video.signalling import (
    CallRoom,
    Close,
    CloseCode,
    Effect,
    JoinGrant,
    Record,
    RoomPolicy,
    SeatState,
    Send,
    VerifyJoin,
)
from tests.consult.conftest import T0

ROOM = "room-" + "x" * 17
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
GRANTS = {
    "doc": JoinGrant(ROOM, "doc-000001", "clinician"),
    "doc2": JoinGrant(ROOM, "doc-000002", "clinician"),
    "pat": JoinGrant(ROOM, "pat-000001", "patient"),
    "int": JoinGrant(ROOM, "int-000001", "interpreter", label="Interpreter"),
    "fam": JoinGrant(ROOM, "fam-000001", "family", label="Son"),
}


def ice(grant: JoinGrant, now: datetime) -> list[dict[str, Any]]:
    return [{"urls": ["turn:127.0.0.1:3478"], "username": f"x:{grant.participant_id}", "credential": "c"}]


class Harness:
    """Feeds a CallRoom and keeps what each connection was sent."""

    def __init__(self, policy: RoomPolicy | None = None) -> None:
        self.room = CallRoom(ROOM, policy=policy or RoomPolicy(), ice_servers=ice)
        self.now = T0
        self.inbox: dict[str, list[dict[str, Any]]] = {}
        self.closed: dict[str, tuple[int, str]] = {}
        self.records: list[Any] = []

    def apply(self, effects: list[Effect]) -> list[Effect]:
        for e in effects:
            if isinstance(e, Send):
                self.inbox.setdefault(e.conn_id, []).append(e.message)
            elif isinstance(e, Close):
                self.closed[e.conn_id] = (e.code, e.reason)
            elif isinstance(e, Record):
                self.records.append(e.event)
        return effects

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def join(self, conn: str, who: str, *, resume: bool = False) -> None:
        self.apply(self.room.open(conn, self.now))
        effects = self.send(conn, {"type": "join", "v": 1, "token": "t", "resume": resume})
        assert [type(e) for e in effects] == [VerifyJoin]
        self.apply(self.room.join_verified(conn, GRANTS[who], self.now, resume=resume))

    def send(self, conn: str, msg: dict[str, Any] | str | bytes) -> list[Effect]:
        raw = msg if isinstance(msg, str | bytes) else json.dumps(msg)
        return self.apply(self.room.receive(conn, raw, self.now))

    def last(self, conn: str) -> dict[str, Any]:
        return self.inbox[conn][-1]

    def types(self, conn: str) -> list[str]:
        return [m["type"] for m in self.inbox.get(conn, [])]

    def errors(self, conn: str) -> list[str]:
        return [m["code"] for m in self.inbox.get(conn, []) if m["type"] == "error"]


def pid(who: str) -> str:
    return GRANTS[who].participant_id


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_a_clinician_joins_the_call_and_a_patient_waits_until_admitted(h: Harness) -> None:
    h.join("c1", "doc")
    assert h.last("c1")["state"] == "in-call"
    assert h.last("c1")["ice_servers"][0]["username"] == "x:doc-000001"
    h.join("c2", "pat")
    joined = h.last("c2")
    assert (joined["state"], joined.get("ice_servers"), joined.get("peers")) == ("waiting", None, None)
    assert h.last("c1") == {
        "type": "waiting-room",
        "waiting": [{"participant_id": pid("pat"), "role": "patient", "label": None, "connected": True}],
    }

    # Nothing is relayed to or from the waiting patient.
    h.send("c1", {"type": "offer", "to": pid("pat"), "sdp": SDP, "ref": "o1"})
    assert h.last("c1") == {
        "type": "error",
        "code": "peer-not-admitted",
        "message": "that participant is in the waiting room",
        "ref": "o1",
    }
    h.send("c2", {"type": "offer", "to": pid("doc"), "sdp": SDP})
    h.send("c2", {"type": "chat", "text": "hello?"})
    h.send("c2", {"type": "ice-candidate", "to": pid("doc"), "candidate": None})
    assert h.errors("c2") == ["not-admitted"] * 3
    assert "offer" not in h.types("c2")
    assert h.room.seat_state(pid("pat")) is SeatState.WAITING

    h.send("c1", {"type": "admit", "participant_id": pid("pat")})
    admitted = h.last("c2")
    assert admitted["type"] == "admitted"
    assert [p["participant_id"] for p in admitted["peers"]] == [pid("doc")]
    assert admitted["ice_servers"][0]["username"] == "x:pat-000001"
    assert h.inbox["c1"][-2:] == [
        {
            "type": "peer-joined",
            "peer": {"participant_id": pid("pat"), "role": "patient", "label": None},
            "resumed": False,
        },
        {"type": "waiting-room", "waiting": []},
    ]
    # The clinician (already in the call) offers; the patient answers; candidates flow both ways.
    h.send("c1", {"type": "offer", "to": pid("pat"), "sdp": SDP})
    assert h.last("c2") == {"type": "offer", "from": pid("doc"), "sdp": SDP}
    h.send("c2", {"type": "answer", "to": pid("doc"), "sdp": SDP})
    assert h.last("c1") == {"type": "answer", "from": pid("pat"), "sdp": SDP}
    cand = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    h.send("c2", {"type": "ice-candidate", "to": pid("doc"), "candidate": cand})
    assert h.last("c1") == {
        "type": "ice-candidate",
        "from": pid("pat"),
        "candidate": {**cand, "usernameFragment": None},
    }
    kinds = [(r.participant_id, r.kind, r.detail) for r in h.records]
    assert kinds == [
        (pid("doc"), "joined", "in-call"),
        (pid("pat"), "joined", "waiting"),
        (pid("pat"), "admitted", pid("doc")),
    ]


def test_only_a_clinician_admits_and_ends_and_misaddressed_messages_are_refused(h: Harness) -> None:
    h.join("c1", "doc")
    h.join("c2", "int")
    h.join("c3", "pat")
    h.send("c1", {"type": "admit", "participant_id": pid("int")})
    h.send("c2", {"type": "admit", "participant_id": pid("pat")})
    h.send("c2", {"type": "end-call"})
    h.send("c2", {"type": "offer", "to": "nobody-in-room", "sdp": SDP})
    h.send("c2", {"type": "offer", "to": pid("int"), "sdp": SDP})  # to oneself
    h.send("c1", {"type": "admit", "participant_id": pid("int")})
    assert h.errors("c2") == ["forbidden", "forbidden", "unknown-peer", "unknown-peer"]
    assert h.errors("c1") == ["already-admitted"]
    assert h.room.seat_state(pid("pat")) is SeatState.WAITING
    assert not h.room.ended


def test_newcomers_are_offered_by_everyone_in_the_call_and_chat_reaches_the_call_only(h: Harness) -> None:
    h.join("c1", "doc")
    h.join("c2", "pat")
    h.send("c1", {"type": "admit", "participant_id": pid("pat")})
    h.join("c3", "doc2")  # a second clinician joins directly
    for conn in ("c1", "c2"):
        assert h.last(conn)["type"] == "peer-joined"
        assert h.last(conn)["peer"]["participant_id"] == pid("doc2")
    assert [p["participant_id"] for p in h.last("c3")["peers"]] == [pid("doc"), pid("pat")]
    h.join("c4", "fam")  # waits
    h.send("c2", {"type": "chat", "text": "I feel dizzy"})
    chat = h.last("c1")
    assert (chat["type"], chat["from"], chat["text"], chat["chat_id"]) == ("chat", pid("pat"), "I feel dizzy", 1)
    assert h.last("c2") == chat  # the sender sees it echoed with its id and time
    assert h.last("c3") == chat
    assert "chat" not in h.types("c4")


def test_a_room_holds_four(h: Harness) -> None:
    for conn, who in (("c1", "doc"), ("c2", "pat"), ("c3", "int"), ("c4", "fam")):
        h.join(conn, who)
    h.join("c5", "doc2")
    assert h.errors("c5") == ["room-full"]
    assert h.closed["c5"] == (CloseCode.REFUSED, "room-full")


def test_a_dropped_connection_resumes_within_the_grace_keeping_its_place(h: Harness) -> None:
    h.join("c1", "doc")
    h.join("c2", "pat")
    h.send("c1", {"type": "admit", "participant_id": pid("pat")})
    h.advance(60)
    h.apply(h.room.closed("c2", h.now))  # network blip
    assert h.last("c1") == {"type": "peer-reconnecting", "participant_id": pid("pat")}
    h.send("c1", {"type": "offer", "to": pid("pat"), "sdp": SDP})
    assert h.errors("c1") == ["peer-unavailable"]
    h.advance(10)
    h.join("c2b", "pat", resume=True)  # peer connections survived: no renegotiation, no re-admission
    rejoined = h.last("c2b")
    assert (rejoined["state"], rejoined["resumed"]) == ("in-call", True)
    assert h.last("c1") == {"type": "peer-reconnected", "participant_id": pid("pat")}
    h.advance(5)
    h.apply(h.room.closed("c2b", h.now))
    h.join("c2c", "pat", resume=False)  # a reloaded page: peers renegotiate
    assert h.last("c1")["type"] == "peer-joined"
    assert h.last("c1")["resumed"] is True
    h.advance(30)
    h.send("c2c", {"type": "leave"})
    assert h.closed["c2c"] == (CloseCode.LEFT, "left")
    assert h.last("c1") == {"type": "peer-left", "participant_id": pid("pat"), "reason": "left"}
    left = [r for r in h.records if r.kind == "left"]
    assert [(r.participant_id, r.in_call_s, r.detail) for r in left] == [(pid("pat"), 105.0, "left")]


def test_after_the_grace_the_seat_is_vacated_and_the_time_counts_until_the_drop(h: Harness) -> None:
    h.join("c1", "doc")
    h.join("c2", "pat")
    h.send("c1", {"type": "admit", "participant_id": pid("pat")})
    h.advance(120)
    h.apply(h.room.closed("c2", h.now))
    h.advance(29.9)
    h.apply(h.room.tick(h.now))
    assert h.room.seat_state(pid("pat")) is SeatState.IN_CALL
    h.advance(0.1)
    h.apply(h.room.tick(h.now))
    assert h.room.seat_state(pid("pat")) is None
    assert h.last("c1") == {"type": "peer-left", "participant_id": pid("pat"), "reason": "timeout"}
    left = next(r for r in h.records if r.kind == "left")
    assert (left.in_call_s, left.detail, left.at) == (120.0, "timeout", h.now)
    h.join("c2d", "pat")  # after the grace: back to the waiting room
    assert h.last("c2d")["state"] == "waiting"


def test_a_second_connection_of_one_participant_replaces_the_first(h: Harness) -> None:
    h.join("c1", "doc")
    h.join("c1b", "doc")
    assert h.closed["c1"] == (CloseCode.REPLACED, "replaced")
    assert h.last("c1b")["resumed"] is True
    h.send("c1", {"type": "ping"})  # the replaced connection is gone
    assert h.last("c1")["code"] == "replaced"


def test_end_call_ends_for_everyone_and_records_each_duration(h: Harness) -> None:
    h.join("c1", "doc")
    h.join("c2", "pat")
    h.advance(30)
    h.send("c1", {"type": "admit", "participant_id": pid("pat")})
    h.join("c3", "fam")  # still waiting when the call ends
    h.advance(600)
    h.send("c2", {"type": "end-call"})
    assert h.errors("c2") == ["forbidden"]
    h.send("c1", {"type": "end-call"})
    assert h.room.ended
    for conn in ("c1", "c2", "c3"):
        assert h.inbox[conn][-1] == {"type": "ended", "by": pid("doc")}
        assert h.closed[conn] == (CloseCode.ENDED, "ended")
    left = {r.participant_id: r.in_call_s for r in h.records if r.kind == "left"}
    assert left == {pid("doc"): 630.0, pid("pat"): 600.0, pid("fam"): 0.0}
    assert h.records[-1].kind == "ended"
    h.apply(h.room.open("late", h.now))
    assert h.errors("late") == ["room-ended"]


def test_hostile_frames_get_errors_and_enough_of_them_close_the_connection() -> None:
    h = Harness(RoomPolicy(limits=Limits(max_message_bytes=4096, max_sdp_bytes=1024, max_chat_chars=10), max_errors=9))
    h.apply(h.room.open("x", h.now))
    h.send("x", {"type": "chat", "text": "hi"})
    h.join("c1", "doc")
    h.join("c2", "pat")
    h.send("c1", {"type": "admit", "participant_id": pid("pat")})
    frames: list[Any] = [
        "not json",
        b"\xff\xfe",
        "[1, 2]",
        {"type": "teleport"},
        {"type": "offer", "to": pid("pat"), "sdp": "v=0" + "a" * 2000},
        {"type": "offer", "to": pid("pat"), "sdp": "hello"},
        {"type": "offer", "to": pid("pat"), "sdp": SDP, "extra": 1},
        {"type": "chat", "text": "x" * 11},
        "{" * 5000,
    ]
    for frame in frames[:-1]:
        h.send("c1", frame)
    assert h.errors("c1") == [
        "invalid-json",
        "invalid-json",
        "invalid-message",
        "unknown-type",
        "too-large",
        "invalid-message",
        "invalid-message",
        "too-large",
    ]
    assert "c1" not in h.closed
    h.send("c1", frames[-1])
    assert h.errors("c1")[-1] == "too-large"
    assert h.closed["c1"] == (CloseCode.PROTOCOL, "too-many-errors")
    assert h.last("c2") == {"type": "peer-reconnecting", "participant_id": pid("doc")}
    assert h.errors("x") == ["not-joined"]
    assert "offer" not in h.types("c2")  # none of the malformed offers was relayed


def test_a_flood_is_rate_limited_then_closed() -> None:
    h = Harness(RoomPolicy(rate_per_s=10, rate_burst=5, max_errors=3))
    h.join("c1", "doc")  # the join used one token
    for _ in range(4):
        h.send("c1", {"type": "ping"})
    assert h.types("c1")[-4:] == ["pong"] * 4
    for _ in range(3):
        h.send("c1", {"type": "ping"})
    assert h.errors("c1") == ["rate-limited"] * 3
    assert h.closed["c1"] == (CloseCode.RATE, "too-many-errors")


def test_the_bucket_refills_with_time() -> None:
    h = Harness(RoomPolicy(rate_per_s=10, rate_burst=2, max_errors=100))
    h.join("c1", "doc")
    h.send("c1", {"type": "ping"})
    h.send("c1", {"type": "ping"})
    assert h.errors("c1") == ["rate-limited"]
    h.advance(0.1)
    h.send("c1", {"type": "ping"})
    assert h.last("c1") == {"type": "pong"}


def test_connections_that_never_join_are_closed_and_refused_joins_leave_no_seat(h: Harness) -> None:
    h.apply(h.room.open("idle", h.now))
    h.apply(h.room.open("bad", h.now))
    h.send("bad", {"type": "join", "v": 1, "token": "forged"})
    h.send("bad", {"type": "join", "v": 1, "token": "again"})
    assert h.errors("bad") == ["already-joined"]
    h.apply(h.room.join_refused("bad", "bad_signature", h.now))
    assert h.last("bad") == {"type": "error", "code": "join-refused", "message": "bad_signature"}
    assert h.closed["bad"] == (CloseCode.REFUSED, "join-refused")
    h.advance(15)
    h.apply(h.room.tick(h.now))
    assert h.closed["idle"] == (CloseCode.PROTOCOL, "join-timeout")
    assert h.room.is_idle


def test_a_grant_for_another_room_is_refused_even_if_the_shell_passes_it(h: Harness) -> None:
    h.apply(h.room.open("c1", h.now))
    h.send("c1", {"type": "join", "v": 1, "token": "t"})
    h.apply(
        h.room.join_verified("c1", JoinGrant("other-room-xxxxxxxx", "doc-000001", "clinician"), h.now, resume=False)
    )
    assert h.errors("c1") == ["join-refused"]
    assert h.room.seat_state("doc-000001") is None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_frames = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    _json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["join", "admit", "offer", "answer", "ice-candidate", "chat", "leave", "end-call"])},
        optional={
            "to": st.text(max_size=70),
            "sdp": st.text(max_size=100),
            "text": st.text(max_size=30),
            "participant_id": st.text(max_size=70),
            "candidate": _json_values,
            "v": _json_values,
        },
    ).map(json.dumps),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), _frames), max_size=25))
def test_any_sequence_of_frames_never_raises_and_never_relays_to_the_waiting(frames) -> None:
    h = Harness(RoomPolicy(max_errors=1000))
    h.join("c1", "doc")
    h.join("c2", "pat")
    h.apply(h.room.open("c3", h.now))
    for conn, frame in frames:
        for effect in h.send(conn, frame):
            if isinstance(effect, VerifyJoin):
                h.apply(h.room.join_refused(effect.conn_id, "bad_signature", h.now))
    if h.room.seat_state(pid("pat")) is SeatState.WAITING:
        assert not {"offer", "answer", "ice-candidate", "chat"} & set(h.types("c2"))
