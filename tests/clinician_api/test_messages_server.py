"""Secure messaging against a real `vigil api` (uvicorn on a free port) over real HTTP: a new message
reaches the open stream of each participant (ids only), never the stream of someone outside the
thread, a thread one is added to is followed at once, and a photo uploads and downloads intact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pyotp
import pytest

from tests.clinician_api.messaging import png_bytes
from tests.clinician_api.world import PASSWORD, SECRET_KEY, World, build
from tests.support.api_process import ApiProcess, api_env, running_api

API = "/api/v1"


@pytest.fixture
def live(db: str) -> Iterator[tuple[World, ApiProcess]]:
    world = build(db)
    with running_api(api_env(db, SECRET_KEY, VIGIL_API_STREAM_MAX_S="30")) as api:
        yield world, api


@contextmanager
def _signed_in(world: World, api: ApiProcess, name: str) -> Iterator[httpx.Client]:
    acct = world[name]
    with httpx.Client(base_url=api.base, timeout=20.0) as client:
        r = client.post(f"{API}/auth/login", json={"email": acct.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["x-csrf-token"] = r.json()["csrf_token"]
        if acct.totp:
            r = client.post(f"{API}/auth/totp/verify", json={"code": pyotp.TOTP(acct.totp).now()})
            assert r.status_code == 200, r.text
        yield client


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            yield name, json.loads(line[6:])
            name = None


def _thread(client: httpx.Client, patient: str, body: str) -> str:
    r = client.post(f"{API}/patients/{patient}/threads", json={"subject": "Swelling", "body": body})
    assert r.status_code == 201, r.text
    return str(r.json()["thread_id"])


def test_messages_arrive_live_only_on_the_participants_streams(live) -> None:
    world, api = live
    with (
        _signed_in(world, api, "c1") as clinician,
        _signed_in(world, api, "pu1") as patient,
        _signed_in(world, api, "c2") as outsider,
    ):
        a = _thread(clinician, "p1", "How is the ankle?")
        b = _thread(outsider, "p3", "Another team's thread")
        with (
            patient.stream("GET", f"{API}/threads/stream") as p_stream,
            outsider.stream("GET", f"{API}/threads/stream") as o_stream,
        ):
            assert p_stream.headers["content-type"].startswith("text/event-stream")
            p_events, o_events = _events(p_stream.iter_lines()), _events(o_stream.iter_lines())
            assert next(p_events)[0] == "ready"
            assert next(o_events)[0] == "ready"
            r = clinician.post(f"{API}/threads/{a}/messages", json={"body": "Please send a photo."})
            assert r.status_code == 201
            first = r.json()
            name, data = next(p_events)
            assert (name, data) == (
                "message",
                {
                    "thread_id": a,
                    "message_id": first["message_id"],
                    "seq": 2,
                    "version": 1,
                    "deleted": False,
                    "mine": False,
                },
            )
            # The outsider's next event is its own thread's message, posted after: thread a's never came.
            r = outsider.post(f"{API}/threads/{b}/messages", json={"body": "noted"})
            name, data = next(o_events)
            assert (name, data["thread_id"], data["mine"]) == ("message", b, True)
            # A thread opened while the stream is open is followed from its creation.
            c = _thread(clinician, "p1", "A second topic")
            assert next(p_events) == ("participant", {"thread_id": c, "active": True})
            name, data = next(e for e in p_events if e[0] != "participant")  # the rest of the care team joining
            assert (name, data["thread_id"], data["seq"]) == ("message", c, 1)
            # An edit and a deletion are events too (new versions), with ids only.
            clinician.patch(f"{API}/threads/{a}/messages/{first['message_id']}", json={"body": "A photo, please."})
            name, data = next(p_events)
            assert (name, data["message_id"], data["version"]) == ("message", first["message_id"], 2)
        # Unread counts follow: two threads of the clinician's, three messages the patient has not read.
        assert patient.get(f"{API}/threads/unread").json() == {"unread": 3}
    with psycopg.connect(world.url) as conn:
        streams = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'messages.stream'").fetchone()
    assert streams == (2,)


def test_a_photo_uploads_and_downloads_intact_over_http(live) -> None:
    world, api = live
    photo = png_bytes(480, 480, noise=True)  # about 700 kB: many TCP segments and ASGI body chunks
    assert len(photo) > 600_000
    with _signed_in(world, api, "pu1") as patient, _signed_in(world, api, "n1") as nurse:
        tid = _thread(patient, "p1", "My ankle today")
        r = patient.post(f"{API}/threads/{tid}/attachments", content=photo, headers={"content-type": "image/png"})
        assert r.status_code == 201, r.text
        aid = r.json()["attachment_id"]
        r = patient.post(f"{API}/threads/{tid}/messages", json={"body": "Here it is", "attachment_id": aid})
        assert r.status_code == 201
        got = nurse.get(f"{API}/threads/{tid}/attachments/{aid}")
        assert got.status_code == 200
        assert got.content == photo
        assert got.headers["cache-control"] == "private, no-store"
