"""The patient picks a time for their consult in the portal: the appointments page links a consult
request with no booked time to its choice page, which lists the open slots in plain words with one
form per slot (CSRF token in a hidden field, no script); booking goes through the same
``consult.scheduling.book`` as the API and lands back on the appointments page with the time.
Each page and each booking leaves one audit row; another patient's consult is the same 404 as a
missing one with a denied row; a slot taken meanwhile says so and books nothing; a form without
its token books nothing."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest

from clinician_api.middleware import CSP
from clinician_api.portal.wording import day_words
from store import enrolment
from tests.clinician_api.world import T0, World, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def _zone(world: World) -> str:
    with psycopg.connect(world.url) as conn:
        return enrolment.org_time_zone(conn, "o1")


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m is not None, page[:500]
    return m.group(1)


async def _setup(world: World, staff: httpx.AsyncClient) -> tuple[int, list[int], list[datetime]]:
    """A consult request for p1 and two open slots of c1 (tomorrow 09:00 and 10:00 UTC)."""
    await sign_in(staff, world["c1"], T0)
    rid = (await staff.post(f"{API}/patients/p1/consults", json={})).json()["request_id"]
    starts = [T0 + timedelta(days=1, hours=h) for h in (0, 1)]
    slots = []
    for s in starts:
        r = await staff.post(
            f"{API}/consult-slots",
            json={"starts_at": s.isoformat(), "ends_at": (s + timedelta(minutes=20)).isoformat()},
        )
        assert r.status_code == 201, r.text
        slots.append(r.json()["slot_id"])
    return rid, slots, starts


def page_slots(page: str) -> list[int]:
    """The slot ids of the page's forms, in order."""
    return [int(x) for x in re.findall(r'name="slot_id" value="(\d+)"', page)]


async def _form_post(client: httpx.AsyncClient, path: str, fields: dict[str, str]) -> httpx.Response:
    """What a browser's form sends: urlencoded fields, no X-CSRF-Token header (no script)."""
    headers = {k: v for k, v in client.headers.items() if k.lower() != "x-csrf-token"}
    return await client.post(path, data=fields, headers=headers)


async def _without_header(client: httpx.AsyncClient) -> None:
    client.headers.pop("x-csrf-token", None)


async def test_the_patient_picks_a_slot_and_sees_the_booked_time(client, world, new_client) -> None:
    staff = new_client()
    rid, slots, starts = await _setup(world, staff)
    await sign_in(client, world["pu1"], T0)
    await _without_header(client)  # the portal's forms work without any script
    zone = _zone(world)
    consults = (await client.get("/portal/p1/consults")).text
    assert f'href="/portal/p1/consults/{rid}/book"' in consults
    assert "Choose a time for a video appointment" in _text(consults)

    before = audit_head(world.url)
    r = await client.get(f"/portal/p1/consults/{rid}/book")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-security-policy"] == CSP
    assert "<script>" not in r.text
    assert " style=" not in r.text
    rows = audit_rows(world.url, since=before)
    assert [row[1:] for row in rows] == [("portal.consult_slots.read", "success", "patient", "p1", "consult", str(rid))]
    words = _text(r.text)
    for start in starts:
        assert f"{day_words(start, zone, with_time=True)} to" in words
    assert "(20 minutes), with C1" in words
    assert page_slots(r.text) == slots
    page = r.text
    assert f'<input type="hidden" name="slot_id" value="{slots[1]}">' in page
    assert 'method="post"' in page

    before = audit_head(world.url)
    r = await _form_post(
        client, f"/portal/p1/consults/{rid}/book", {"csrf_token": _csrf(page), "slot_id": str(slots[1])}
    )
    assert (r.status_code, r.headers["location"]) == (303, "/portal/p1/consults"), r.text[:300]
    rows = audit_rows(world.url, since=before)
    assert [row[1:] for row in rows] == [("portal.consult.book", "success", "patient", "p1", "consult", str(rid))]
    words = _text((await client.get("/portal/p1/consults")).text)
    assert f"Your next video appointment with C1: {day_words(starts[1], zone, with_time=True)}" in words
    assert "Choose a time for a video appointment" not in words
    # The same booking the API sees, with the other slot still open.
    consult = (await staff.get(f"{API}/consults/{rid}")).json()
    assert (consult["status"], consult["slot"]["slot_id"]) == ("scheduled", slots[1])
    open_ids = [s["slot_id"] for s in (await staff.get(f"{API}/consult-slots")).json()]
    assert open_ids == [slots[0]]
    # Booked: the choice page and a second tap go back to the appointments page, booking nothing more.
    r = await client.get(f"/portal/p1/consults/{rid}/book")
    assert (r.status_code, r.headers["location"]) == (303, "/portal/p1/consults")
    r = await _form_post(
        client, f"/portal/p1/consults/{rid}/book", {"csrf_token": _csrf(page), "slot_id": str(slots[0])}
    )
    assert (r.status_code, r.headers["location"]) == (303, "/portal/p1/consults")
    assert [s["slot_id"] for s in (await staff.get(f"{API}/consult-slots")).json()] == [slots[0]]


async def test_a_slot_taken_meanwhile_says_so_and_books_nothing(client, world, new_client) -> None:
    staff = new_client()
    rid, slots, _ = await _setup(world, staff)
    other = (await staff.post(f"{API}/patients/p2/consults", json={})).json()["request_id"]
    await sign_in(client, world["pu1"], T0)
    await _without_header(client)
    page = (await client.get(f"/portal/p1/consults/{rid}/book")).text
    # Between showing the page and the tap, p2's consult is booked into the first slot.
    assert (await staff.post(f"{API}/consults/{other}/book", json={"slot_id": slots[0]})).status_code == 200
    before = audit_head(world.url)
    r = await _form_post(
        client, f"/portal/p1/consults/{rid}/book", {"csrf_token": _csrf(page), "slot_id": str(slots[0])}
    )
    assert (r.status_code, r.headers["location"]) == (303, f"/portal/p1/consults/{rid}/book?why=taken")
    assert [row[1:3] for row in audit_rows(world.url, since=before)] == [("portal.consult.book", "failed")]
    again = await client.get(r.headers["location"])
    words = _text(again.text)
    assert "Sorry, that time has just been taken by someone else. Please choose another time." in words
    assert page_slots(again.text) == slots[1:]  # only the slot still open
    assert (await staff.get(f"{API}/consults/{rid}")).json()["status"] == "requested"
    # A slot id that is no slot at all (or another organisation's) is the same message.
    r = await _form_post(client, f"/portal/p1/consults/{rid}/book", {"csrf_token": _csrf(page), "slot_id": "999999"})
    assert r.headers["location"] == f"/portal/p1/consults/{rid}/book?why=taken"


async def test_another_patients_consult_is_404_with_a_denied_row(client, world, new_client) -> None:
    staff = new_client()
    rid, slots, _ = await _setup(world, staff)
    other = (await staff.post(f"{API}/patients/p2/consults", json={})).json()["request_id"]
    await sign_in(client, world["pu1"], T0)
    await _without_header(client)
    csrf = _csrf((await client.get(f"/portal/p1/consults/{rid}/book")).text)
    for path, action, pid in (
        (f"/portal/p1/consults/{other}/book", "portal.consult_slots.read", "p2"),
        ("/portal/p1/consults/987654/book", "portal.consult_slots.read", None),
        ("/portal/p1/consults/x1/book", "portal.consult_slots.read", None),
    ):
        before = audit_head(world.url)
        r = await client.get(path)
        assert r.status_code == 404, path
        assert "p2" not in _text(r.text)
        assert [row[1:5] for row in audit_rows(world.url, since=before)] == [(action, "denied", "patient", pid)]
    before = audit_head(world.url)
    r = await _form_post(client, f"/portal/p1/consults/{other}/book", {"csrf_token": csrf, "slot_id": str(slots[0])})
    assert r.status_code == 404
    assert [row[1:5] for row in audit_rows(world.url, since=before)] == [
        ("portal.consult.book", "denied", "patient", "p2")
    ]
    # Through another patient's portal path: the portal guard's own 404.
    before = audit_head(world.url)
    r = await _form_post(client, f"/portal/p2/consults/{other}/book", {"csrf_token": csrf, "slot_id": str(slots[0])})
    assert r.status_code == 404
    assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"]
    assert (await staff.get(f"{API}/consults/{other}")).json()["status"] == "requested"
    assert len((await staff.get(f"{API}/consult-slots")).json()) == 2


async def test_a_form_without_its_token_books_nothing(client, world, new_client) -> None:
    staff = new_client()
    rid, slots, _ = await _setup(world, staff)
    await sign_in(client, world["pu1"], T0)
    await _without_header(client)
    for fields in ({"slot_id": str(slots[0])}, {"csrf_token": "forged", "slot_id": str(slots[0])}):
        before = audit_head(world.url)
        r = await _form_post(client, f"/portal/p1/consults/{rid}/book", fields)
        assert r.status_code == 403
        assert [row[1] for row in audit_rows(world.url, since=before) if row[2] == "success"] == []
    # Another signed-in patient's token is not this session's either.
    other = new_client()
    await sign_in(other, world["pu1"], T0)
    other_csrf = other.headers["x-csrf-token"]
    assert other_csrf != ""
    r = await _form_post(client, f"/portal/p1/consults/{rid}/book", {"csrf_token": other_csrf, "slot_id": "1"})
    assert r.status_code == 403
    assert (await staff.get(f"{API}/consults/{rid}")).json()["status"] == "requested"
    assert len((await staff.get(f"{API}/consult-slots")).json()) == 2


async def test_no_open_times_says_so(client, world, new_client) -> None:
    staff = new_client()
    await sign_in(staff, world["c1"], T0)
    rid = (await staff.post(f"{API}/patients/p1/consults", json={})).json()["request_id"]
    await sign_in(client, world["pu1"], T0)
    words = _text((await client.get(f"/portal/p1/consults/{rid}/book")).text)
    assert "There are no free times in the next 14 days." in words
