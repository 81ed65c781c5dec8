"""The portal's video appointment: a consult started now shows a join button, which mints the
patient's own link (one ``consult.link`` audit row) and opens the waiting room; a booked one shows
its time, the clinician and when the button turns on; nothing for another patient's consult, and a
staff member following the button lands on the consult's page instead of taking the patient's seat."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from consult.video.links import JoinLinkSigner
from tests.clinician_api.world import SECRET_KEY, T0, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


async def test_a_consult_started_now_is_joined_from_the_portal(client, world, new_client) -> None:
    staff = new_client()
    await sign_in(staff, world["c1"], T0)
    rid = (await staff.post(f"{API}/patients/p1/consults", json={})).json()["request_id"]
    other = (await staff.post(f"{API}/patients/p2/consults", json={})).json()["request_id"]
    await staff.post(f"{API}/consults/{other}/start")
    await sign_in(client, world["pu1"], T0)
    assert "No video appointment booked." in _text((await client.get("/portal/p1")).text)  # requested only
    started = (await staff.post(f"{API}/consults/{rid}/start")).json()
    page = (await client.get("/portal/p1/consults")).text
    assert "as soon as a clinician is free" in _text(page)
    assert f'href="/consults/{rid}/join"' in page
    before = audit_head(world.url)
    r = await client.get(f"/consults/{rid}/join")
    assert r.status_code == 303
    location = r.headers["location"]
    room = started["consult"]["room"]["room_id"]
    assert location.startswith(f"/consult/rooms/{room}/join#t=")
    claims = JoinLinkSigner(SECRET_KEY.encode()).verify(location.split("#t=")[1], room_id=room, now=T0)
    assert claims.participant_id == started["patient"]["participant_id"]
    assert [row[1:3] for row in audit_rows(world.url, since=before)] == [("consult.link", "success")]
    # Another patient's consult: the same 404 as a missing one, audited.
    before = audit_head(world.url)
    assert (await client.get(f"/consults/{other}/join")).status_code == 404
    assert [row[1:3] for row in audit_rows(world.url, since=before)] == [("consult.read", "denied")]
    # Staff following the button are sent to the consult's page, never into the patient's seat.
    r = await staff.get(f"/consults/{rid}/join")
    assert (r.status_code, r.headers["location"]) == (303, f"/consults/{rid}")


async def test_a_booked_consult_shows_its_time_and_when_the_button_turns_on(client, world, new_client) -> None:
    staff = new_client()
    await sign_in(staff, world["c1"], T0)
    rid = (await staff.post(f"{API}/patients/p1/consults", json={})).json()["request_id"]
    start = T0 + timedelta(days=1)
    slot = (
        await staff.post(
            f"{API}/consult-slots",
            json={"starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=20)).isoformat()},
        )
    ).json()["slot_id"]
    await sign_in(client, world["pu1"], T0)
    assert (await client.post(f"{API}/consults/{rid}/book", json={"slot_id": slot})).status_code == 200
    words = _text((await client.get("/portal/p1")).text)
    assert "Your next video appointment with C1:" in words
    assert "The join button appears here from" in words
    assert f'href="/consults/{rid}/join"' not in (await client.get("/portal/p1")).text
