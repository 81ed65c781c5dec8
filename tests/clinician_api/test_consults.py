"""Video consults over HTTP against real PostgreSQL: request, start now (links for the caller and
the patient), availability and booking (the patient picks a slot), guests, reissued links, removal;
who may see and do what (404 + one denied audit row outside the panel, 403 by role), one audit row
per call."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from consult.video.links import JoinLinkSigner
from tests.clinician_api.world import SECRET_KEY, T0, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


def _token(link: str) -> str:
    return link.split("#t=", 1)[1]


async def _consult(client, patient: str = "p1", reason: str = "follow up on SpO2") -> int:
    r = await client.post(f"{API}/patients/{patient}/consults", json={"reason": reason})
    assert r.status_code == 201, r.text
    return int(r.json()["request_id"])


async def test_start_now_seats_caller_and_patient_with_signed_links(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    before = audit_head(world.url)
    rid = await _consult(client)
    r = await client.post(f"{API}/consults/{rid}/start")
    assert r.status_code == 200, r.text
    out = r.json()
    me, patient = out["me"], out["patient"]
    assert (me["role"], patient["role"]) == ("clinician", "patient")
    room = out["consult"]["room"]
    assert me["join_url"].startswith(f"http://localhost:8000/consult/rooms/{room['room_id']}/join#t=v1.")
    assert me["join_path"] == me["join_url"].removeprefix("http://localhost:8000")
    # Each link is bound to its participant and room, signed with the key derived from the API secret.
    signer = JoinLinkSigner(SECRET_KEY.encode())
    claims = signer.verify(_token(patient["join_url"]), room_id=room["room_id"], now=T0)
    assert claims.participant_id == patient["participant_id"]
    assert claims.expires_at == T0 + timedelta(hours=4)
    seats = {p["role"]: p for p in room["participants"]}
    assert seats["patient"]["user_id"] == world["pu1"].user_id  # the patient's account holds the seat
    assert seats["clinician"]["user_id"] == world["c1"].user_id
    detail = (await client.get(f"{API}/consults/{rid}")).json()
    assert detail["status"] == "requested"  # in progress once someone enters the call
    assert [row[1:3] for row in audit_rows(world.url, since=before)] == [
        ("consult.create", "success"),
        ("consult.start", "success"),
        ("consult.read", "success"),
    ]


async def test_outsiders_get_404_and_the_denial_is_audited(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    rid = await _consult(client)
    for name in ("c2", "x1"):  # another team; another organisation
        other = new_client()
        await sign_in(other, world[name], T0)
        before = audit_head(world.url)
        for method, path in (
            ("GET", f"{API}/consults/{rid}"),
            ("POST", f"{API}/consults/{rid}/start"),
            ("POST", f"{API}/consults/{rid}/my-link"),
        ):
            r = await other.request(method, path)
            assert r.status_code == 404, (name, path, r.text)
        rows = audit_rows(world.url, since=before)
        assert [(row[2], row[4], row[5]) for row in rows] == [("denied", "p1", "consult")] * 3
    # Unknown and malformed ids look the same.
    assert (await client.get(f"{API}/consults/999999")).status_code == 404
    assert (await client.get(f"{API}/consults/1%00")).status_code == 404


async def test_roles_a_coordinator_books_but_cannot_start(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    rid = await _consult(client)
    cc = new_client()
    await sign_in(cc, world["cc1"], T0)
    r = await cc.post(f"{API}/consults/{rid}/start")
    assert (r.status_code, r.json()["code"]) == (403, "role")
    assert (await cc.post(f"{API}/patients/p1/consults", json={})).status_code == 403
    assert (await cc.get(f"{API}/consults/{rid}")).status_code == 200


async def test_the_patient_picks_a_slot_and_gets_their_own_link(client, world, new_client, clock) -> None:
    await sign_in(client, world["c1"], T0)
    rid = await _consult(client)
    other = await _consult(client, "p2")
    start = T0 + timedelta(days=1)
    window = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=20)).isoformat()}
    r = await client.post(f"{API}/consult-slots", json=window)
    assert r.status_code == 201, r.text
    slot = r.json()["slot_id"]
    a, b = start + timedelta(minutes=10), start + timedelta(hours=1)
    later = {"starts_at": a.isoformat(), "ends_at": b.isoformat()}
    overlap = await client.post(f"{API}/consult-slots", json=later)
    assert (overlap.status_code, overlap.json()["code"]) == (409, "slot_overlap")

    patient = new_client()
    await sign_in(patient, world["pu1"], T0)
    mine = (await patient.get(f"{API}/patients/p1/consults")).json()
    assert [c["request_id"] for c in mine] == [rid]
    assert (await patient.get(f"{API}/consults/{other}")).status_code == 404  # p2's consult
    slots = (await patient.get(f"{API}/consult-slots")).json()
    assert [s["slot_id"] for s in slots] == [slot]
    assert (await patient.post(f"{API}/consults/{rid}/start")).status_code == 403  # patients do not start
    r = await patient.post(f"{API}/consults/{rid}/book", json={"slot_id": slot})
    assert r.status_code == 200, r.text
    booked = r.json()
    assert (booked["status"], booked["slot"]["slot_id"]) == ("scheduled", slot)
    assert booked["room"]["scheduled_start"] is not None
    # The slot is gone for everyone; booking it again for another request fails.
    assert (await patient.get(f"{API}/consult-slots")).json() == []
    taken = await client.post(f"{API}/consults/{other}/book", json={"slot_id": slot})
    assert (taken.status_code, taken.json()["code"]) == (409, "slot_unavailable")
    link = (await patient.post(f"{API}/consults/{rid}/my-link")).json()
    assert link["role"] == "patient"
    # A scheduled consult's link lasts until an hour after the slot's end.
    assert link["expires_at"].startswith((start + timedelta(minutes=80)).isoformat()[:16])


async def test_guests_reissue_and_removal(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    rid = await _consult(client)
    assert (await client.post(f"{API}/consults/{rid}/guests", json={"role": "family", "label": "Daughter"})).json()[
        "code"
    ] == "no_room"
    started = (await client.post(f"{API}/consults/{rid}/start")).json()
    room_id = started["consult"]["room"]["room_id"]
    r = await client.post(f"{API}/consults/{rid}/guests", json={"role": "interpreter", "label": "Spanish"})
    assert r.status_code == 201, r.text
    interp = r.json()
    r = await client.post(f"{API}/consults/{rid}/guests", json={"role": "family", "label": "Daughter"})
    assert r.status_code == 201
    fifth = await client.post(f"{API}/consults/{rid}/guests", json={"role": "family", "label": "Son"})
    assert (fifth.status_code, fifth.json()["code"]) == (409, "room_full")  # four at most
    staff = await client.post(f"{API}/consults/{rid}/guests", json={"role": "clinician", "label": "x"})
    assert staff.status_code == 422
    # Reissuing a link bumps the participant's generation: the old link is refused by the database check.
    new = (await client.post(f"{API}/consults/{rid}/links", json={"participant_id": interp["participant_id"]})).json()
    assert new["join_url"] != interp["join_url"]
    with psycopg.connect(world.url) as conn:
        gen = conn.execute(
            "SELECT generation FROM consult_room_participants WHERE participant_id = %s", (interp["participant_id"],)
        ).fetchone()
    assert gen == (2,)
    r = await client.delete(f"{API}/consults/{rid}/participants/{interp['participant_id']}")
    assert r.status_code == 200, r.text
    people = {p["participant_id"]: p for p in r.json()["room"]["participants"]}
    assert people[interp["participant_id"]]["removed"] is True
    assert (await client.delete(f"{API}/consults/{rid}/participants/{interp['participant_id']}")).status_code == 404
    # A participant of another room cannot be reached through this consult.
    other = await _consult(client, "p2")
    other_room = (await client.post(f"{API}/consults/{other}/start")).json()
    theirs = other_room["patient"]["participant_id"]
    assert (await client.post(f"{API}/consults/{rid}/links", json={"participant_id": theirs})).status_code == 404
    assert (await client.delete(f"{API}/consults/{rid}/participants/{theirs}")).status_code == 404
    assert room_id != other_room["consult"]["room"]["room_id"]


async def test_cancel_ends_the_room(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    rid = await _consult(client)
    await client.post(f"{API}/consults/{rid}/start")
    r = await client.post(f"{API}/consults/{rid}/cancel")
    assert (r.status_code, r.json()["status"], r.json()["room"]["status"]) == (200, "canceled", "ended")
    again = await client.post(f"{API}/consults/{rid}/cancel")
    assert (again.status_code, again.json()["code"]) == (409, "consult_state")
    assert (await client.post(f"{API}/consults/{rid}/my-link")).json()["code"] == "no_room"
