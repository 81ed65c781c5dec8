"""The call's signalling through a real `vigil api` (uvicorn, real WebSockets, real PostgreSQL):
the waiting room holds the patient until the clinician admits them, chat is relayed, a dropped
connection resumes within the grace without a new admission, the clinician ends the call; the call's
events, the consult's status, the clinician's billing time and one audit row per join are stored.
Hostile: a valid link for another room, a clinician's link without that clinician's session (or with
another's), a cross-origin handshake — each refused, recorded and audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import psycopg
import pyotp
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.clinician_api.world import PASSWORD, SECRET_KEY, World, audit_head, audit_rows, build
from tests.support.api_process import ApiProcess, api_env, running_api

API = "/api/v1"
T = TypeVar("T")


_CLIENTS: list[httpx.Client] = []


@pytest.fixture
def served(db: str) -> Iterator[tuple[World, ApiProcess]]:
    world = build(db)
    with running_api(api_env(db, SECRET_KEY, VIGIL_VIDEO_RECONNECT_GRACE_S="30")) as api:
        try:
            yield world, api
        finally:
            while _CLIENTS:
                _CLIENTS.pop().close()


def _eventually(query: Callable[[], T], want: T, timeout: float = 10.0) -> None:
    """Poll ``query`` until it returns ``want`` (the hub stores events just after it sends them)."""
    deadline = time.monotonic() + timeout
    got = query()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = query()
    assert got == want


def _signed_in(api: ApiProcess, world: World, name: str) -> httpx.Client:
    acct = world[name]
    client = httpx.Client(base_url=api.base, timeout=10.0)
    _CLIENTS.append(client)
    r = client.post(f"{API}/auth/login", json={"email": acct.email, "password": PASSWORD})
    r.raise_for_status()
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    if acct.totp:
        client.post(f"{API}/auth/totp/verify", json={"code": pyotp.TOTP(acct.totp).now()}).raise_for_status()
    return client


def _started(client: httpx.Client, patient: str) -> dict[str, Any]:
    r = client.post(f"{API}/patients/{patient}/consults", json={"reason": "call"})
    r.raise_for_status()
    rid = r.json()["request_id"]
    r = client.post(f"{API}/consults/{rid}/start")
    r.raise_for_status()
    return {"request_id": rid, **r.json()}


def _token(link: dict[str, Any]) -> str:
    return str(link["join_url"]).split("#t=", 1)[1]


@contextmanager
def _socket(
    api: ApiProcess, room_id: str, *, client: httpx.Client | None = None, origin: str | None = None
) -> Iterator[ClientConnection]:
    headers = {"Origin": origin or api.base}
    if client is not None:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    url = api.base.replace("http://", "ws://") + f"/consult/rooms/{room_id}/ws"
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        yield ws


def _send(ws: ClientConnection, **msg: Any) -> None:
    ws.send(json.dumps(msg))


def _expect(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (others in between are skipped)."""
    while True:
        msg = json.loads(ws.recv(timeout=10))
        if msg["type"] == kind:
            return dict(msg)
        assert msg["type"] != "error", msg


def _closed_with(ws: ClientConnection) -> int | None:
    """The close code the server sent, after reading what was left."""
    while True:
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


def test_waiting_room_admit_chat_resume_and_end(served: tuple[World, ApiProcess]) -> None:
    world, api = served
    c1 = _signed_in(api, world, "c1")
    call = _started(c1, "p1")
    room = call["consult"]["room"]["room_id"]
    before = audit_head(world.url)
    with _socket(api, room, client=c1) as clinician:
        _send(clinician, type="join", v=1, token=_token(call["me"]))
        joined = _expect(clinician, "joined")
        assert (joined["state"], joined["role"], joined["waiting"]) == ("in-call", "clinician", [])
        with _socket(api, room) as patient:
            _send(patient, type="join", v=1, token=_token(call["patient"]))
            waiting = _expect(patient, "joined")
            assert waiting["state"] == "waiting"
            assert "ice_servers" not in waiting  # no TURN credentials before admission
            pid = waiting["participant_id"]
            listed = _expect(clinician, "waiting-room")
            assert [w["participant_id"] for w in listed["waiting"]] == [pid]
            _send(clinician, type="admit", participant_id=pid)
            assert _expect(patient, "admitted")["peers"][0]["role"] == "clinician"
            assert _expect(clinician, "peer-joined")["peer"]["participant_id"] == pid
            _send(patient, type="chat", text="I can hear you")
            assert _expect(clinician, "chat")["text"] == "I can hear you"
            assert _expect(patient, "chat")["from"] == pid
        # The patient's connection dropped: the seat is kept, the clinician is told.
        assert _expect(clinician, "peer-reconnecting")["participant_id"] == pid
        with _socket(api, room) as patient:
            _send(patient, type="join", v=1, token=_token(call["patient"]), resume=True)
            back = _expect(patient, "joined")
            assert (back["state"], back["resumed"]) == ("in-call", True)  # no second admission
            assert _expect(clinician, "peer-reconnected")["participant_id"] == pid
            _send(clinician, type="end-call")
            assert _expect(patient, "ended")["type"] == "ended"
            assert _closed_with(patient) == 4410

    def status() -> tuple[str, ...] | None:
        with psycopg.connect(world.url) as conn:
            return conn.execute(
                "SELECT status FROM consult_requests WHERE request_id = %s", (call["request_id"],)
            ).fetchone()

    _eventually(status, ("completed",))
    with psycopg.connect(world.url) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT kind FROM consult_call_events WHERE room_id = %s ORDER BY at, event_id", (room,)
            )
        ]
        billed = conn.execute(
            "SELECT clinician_id::text, kind, capture, patient_id FROM time_entries WHERE call_event_id IS NOT NULL"
        ).fetchall()
    assert kinds[:3] == ["joined", "joined", "admitted"]
    assert kinds[-1] == "ended"
    assert {"disconnected", "resumed", "left"} <= set(kinds)
    assert billed == [(world["c1"].user_id, "interactive_communication", "timer", "p1")]
    joins = [r for r in audit_rows(world.url, since=before) if r[1] == "consult.join"]
    assert [(r[2], r[4]) for r in joins] == [("success", "p1")] * 3  # clinician, patient, patient again
    detail = c1.get(f"{API}/consults/{call['request_id']}").json()
    assert detail["room"]["status"] == "ended"
    assert detail["room"]["duration_s"] is not None


def test_a_valid_link_for_another_room_is_refused(served: tuple[World, ApiProcess]) -> None:
    world, api = served
    c1 = _signed_in(api, world, "c1")
    mine, theirs = _started(c1, "p1"), _started(c1, "p2")
    room = mine["consult"]["room"]["room_id"]
    before = audit_head(world.url)
    with _socket(api, room) as intruder:
        _send(intruder, type="join", v=1, token=_token(theirs["patient"]))
        refused = json.loads(intruder.recv(timeout=10))
        assert (refused["type"], refused["code"], refused["message"]) == ("error", "join-refused", "wrong_room")
        assert _closed_with(intruder) == 4403
    # The same link joins its own room (it is valid), and only as a waiting patient there.
    with _socket(api, theirs["consult"]["room"]["room_id"]) as own:
        _send(own, type="join", v=1, token=_token(theirs["patient"]))
        assert _expect(own, "joined")["state"] == "waiting"
    other = theirs["consult"]["room"]["room_id"]

    def joins() -> list[tuple[Any, ...]]:
        return [(r[2], r[4], r[6]) for r in audit_rows(world.url, since=before) if r[1] == "consult.join"]

    _eventually(joins, [("denied", "p1", room), ("success", "p2", other)])
    with psycopg.connect(world.url) as conn:
        reasons = conn.execute("SELECT room_id, reason FROM consult_join_refusals").fetchall()
    assert reasons == [(room, "wrong_room")]


def test_a_clinicians_link_needs_that_clinicians_session(served: tuple[World, ApiProcess]) -> None:
    world, api = served
    c1, n1 = _signed_in(api, world, "c1"), _signed_in(api, world, "n1")
    call = _started(c1, "p1")
    room = call["consult"]["room"]["room_id"]
    for client in (None, n1):  # no session; a colleague's session
        with _socket(api, room, client=client) as ws:
            _send(ws, type="join", v=1, token=_token(call["me"]))
            refused = json.loads(ws.recv(timeout=10))
            assert (refused["code"], refused["message"]) == ("join-refused", "not_signed_in")
            assert _closed_with(ws) == 4403

    def reasons() -> list[str]:
        with psycopg.connect(world.url) as conn:
            return [r[0] for r in conn.execute("SELECT reason FROM consult_join_refusals ORDER BY refusal_id")]

    _eventually(reasons, ["not_signed_in", "not_signed_in"])


def test_a_cross_origin_handshake_is_refused(served: tuple[World, ApiProcess]) -> None:
    world, api = served
    c1 = _signed_in(api, world, "c1")
    call = _started(c1, "p1")
    room = call["consult"]["room"]["room_id"]
    with pytest.raises(InvalidStatus) as refused, _socket(api, room, client=c1, origin="https://evil.example"):
        pass
    assert refused.value.response.status_code == 403


def test_admission_hands_out_turn_credentials_minted_for_the_participant(db: str) -> None:
    """ICE servers come from settings; each participant gets a coturn REST credential of their own
    (username ``<expiry>:<participant>``, password HMAC-SHA1 of coturn's static-auth-secret)."""
    world = build(db)
    secret = "turn-" + "k9Qz" * 12
    env = api_env(
        db,
        SECRET_KEY,
        VIGIL_VIDEO_STUN_URLS='["stun:127.0.0.1:3478"]',
        VIGIL_VIDEO_TURN_URLS='["turn:127.0.0.1:3478?transport=udp"]',
        VIGIL_VIDEO_TURN_SECRET=secret,
    )
    with running_api(env) as api:
        c1 = _signed_in(api, world, "c1")
        try:
            call = _started(c1, "p1")
            room = call["consult"]["room"]["room_id"]
            with _socket(api, room, client=c1) as clinician, _socket(api, room) as patient:
                _send(clinician, type="join", v=1, token=_token(call["me"]))
                mine = _expect(clinician, "joined")["ice_servers"]
                _send(patient, type="join", v=1, token=_token(call["patient"]))
                pid = _expect(patient, "joined")["participant_id"]
                _send(clinician, type="admit", participant_id=pid)
                theirs = _expect(patient, "admitted")["ice_servers"]
        finally:
            c1.close()
    for servers, participant in ((mine, call["me"]["participant_id"]), (theirs, pid)):
        assert servers[0] == {"urls": ["stun:127.0.0.1:3478"]}
        turn = servers[1]
        assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
        expiry, who = turn["username"].split(":")
        assert who == participant
        assert int(expiry) > time.time() + 3000  # an hour for a call started now
        digest = hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(digest).decode()
