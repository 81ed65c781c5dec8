"""Consult notes and follow-up tasks over the API (real PostgreSQL): a note starts with the patient's
recent vitals, is saved, signed (then read-only, in the database too), amended as a new version and
exported as FHIR; follow-up tasks land on the care team's list; outsiders get 404 with a denied
audit row; a patient and a care coordinator cannot write notes."""

from __future__ import annotations

import base64
from datetime import timedelta

import psycopg
import pytest

from store.consults import request_consult
from tests.clinician_api.world import T0, add_readings, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


async def _as(new_client, world, name: str):
    c = new_client()
    await sign_in(c, world[name], T0)
    return c


def _consult(world, patient: str = "p1") -> int:
    with psycopg.connect(world.url, autocommit=True) as conn:
        row = request_consult(
            conn,
            org_id="o1",
            patient_id=patient,
            alert_id=None,
            requested_at=T0,
            requested_by="test",
            reason="follow-up",
        )
    return int(row.request_id)


async def test_a_note_is_written_signed_amended_and_exported(client, world) -> None:
    add_readings(world.url, "o1", "p1", "spo2", [(T0 - timedelta(hours=100), 97.0), (T0 - timedelta(hours=2), 91.0)])
    add_readings(world.url, "o1", "p1", "heart_rate", [(T0 - timedelta(hours=1), 88.0)])
    request_id = _consult(world)
    await sign_in(client, world["c1"], T0)
    r = await client.post(f"{API}/patients/p1/notes", json={"request_id": request_id})
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["status"] == "draft"
    objective = note["current"]["objective"]
    assert "91" in objective
    assert "88" in objective
    assert "97" not in objective  # older than 72 hours
    assert {v["metric"] for v in note["current"]["vitals"]} == {"spo2", "heart_rate"}
    nid = note["note_id"]

    r = await client.post(f"{API}/notes/{nid}/sign")
    assert (r.status_code, r.json()["code"]) == (422, "incomplete")
    r = await client.put(
        f"{API}/notes/{nid}/draft",
        json={"subjective": "Short of breath on stairs", "assessment": "Mild hypoxaemia", "plan": "Re-measure"},
    )
    assert r.json()["current"]["objective"] == objective  # left out: kept
    r = await client.post(f"{API}/notes/{nid}/sign")
    assert r.json()["status"] == "signed"
    assert r.json()["current"]["signed_by"] == world["c1"].user_id
    r = await client.put(f"{API}/notes/{nid}/draft", json={"plan": "changed"})
    assert (r.status_code, r.json()["code"]) == (409, "signed")
    with psycopg.connect(world.url, autocommit=True) as conn:  # read-only in the database too
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE consult_note_versions SET plan = 'rewritten'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM consult_note_versions")

    r = await client.post(f"{API}/notes/{nid}/amend", json={"reason": "dose clarified"})
    amended = r.json()
    assert amended["status"] == "amending"
    assert (amended["current"]["version"], amended["current"]["amends_version"]) == (2, 1)
    r = await client.post(f"{API}/notes/{nid}/amend", json={"reason": "again"})
    assert (r.status_code, r.json()["code"]) == (409, "draft_open")
    await client.put(f"{API}/notes/{nid}/draft", json={"plan": "Re-measure SpO2 in 4 hours"})
    signed = (await client.post(f"{API}/notes/{nid}/sign")).json()
    assert [v["plan"] for v in signed["versions"]] == ["Re-measure", "Re-measure SpO2 in 4 hours"]

    bundle = (await client.get(f"{API}/notes/{nid}/fhir")).json()
    encounter, document = (e["resource"] for e in bundle["entry"])
    assert (bundle["type"], encounter["resourceType"], document["resourceType"]) == (
        "collection",
        "Encounter",
        "DocumentReference",
    )
    assert encounter["class"]["code"] == "VR"
    assert encounter["identifier"] == [{"system": "urn:vigil:consult-request", "value": str(request_id)}]
    assert document["docStatus"] == "amended"
    assert document["type"]["coding"][0]["code"] == "11488-4"
    assert document["context"]["encounter"][0]["reference"] == f"Encounter/{encounter['id']}"
    text = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
    assert "Re-measure SpO2 in 4 hours" in text
    assert "Short of breath" in text


async def test_follow_up_tasks_reach_the_care_teams_list(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    nid = (await client.post(f"{API}/patients/p1/notes", json={})).json()["note_id"]
    r = await client.post(
        f"{API}/patients/p1/tasks",
        json={"kind": "remeasure", "due_in_hours": 4, "metrics": ["spo2"], "note_id": nid, "detail": "after rest"},
    )
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["due_at"].startswith((T0 + timedelta(hours=4)).isoformat()[:19])
    await client.post(f"{API}/patients/p2/tasks", json={"kind": "schedule_consult", "due_in_hours": 1})
    r = await client.post(f"{API}/patients/p1/tasks", json={"kind": "remeasure", "due_in_hours": 4})
    assert (r.status_code, r.json()["code"]) == (422, "no_metrics")
    other_note = (await client.post(f"{API}/patients/p2/notes", json={})).json()["note_id"]
    r = await client.post(f"{API}/patients/p1/tasks", json={"kind": "other", "due_in_hours": 4, "note_id": other_note})
    assert (r.status_code, r.json()["code"]) == (422, "bad_note")

    coordinator = await _as(new_client, world, "cc1")
    listed = (await coordinator.get(f"{API}/tasks")).json()
    assert [(t["patient_id"], t["kind"]) for t in listed] == [("p2", "schedule_consult"), ("p1", "remeasure")]
    r = await coordinator.post(f"{API}/tasks/{task['task_id']}/close", json={"status": "done", "note": "97 %"})
    assert (r.json()["status"], r.json()["closed_by"]) == ("done", world["cc1"].user_id)
    r = await coordinator.post(f"{API}/tasks/{task['task_id']}/close", json={"status": "done"})
    assert (r.status_code, r.json()["code"]) == (409, "closed")
    assert [t["patient_id"] for t in (await coordinator.get(f"{API}/tasks")).json()] == ["p2"]
    other_team = await _as(new_client, world, "c2")
    assert (await other_team.get(f"{API}/tasks")).json() == []  # p1 and p2 are not in c2's panel
    # The dashboard's task list: the same data, one audit row.
    head = audit_head(world.url)
    page = await coordinator.get("/tasks")
    assert page.status_code == 200
    assert page.text.count('data-action="task-done"') == 1
    assert "schedule consult" in page.text
    assert [(r[1], r[2]) for r in audit_rows(world.url, since=head)] == [("tasks.read", "success")]


async def test_outsiders_and_roles_without_the_right_are_refused(client, world, new_client) -> None:
    await sign_in(client, world["c1"], T0)
    nid = (await client.post(f"{API}/patients/p1/notes", json={})).json()["note_id"]
    tid = (await client.post(f"{API}/patients/p1/tasks", json={"kind": "other", "due_in_hours": 2})).json()["task_id"]
    head = audit_head(world.url)
    for name in ("c2", "x1"):
        c = await _as(new_client, world, name)
        for method, path, body in (
            ("GET", f"/notes/{nid}", None),
            ("PUT", f"/notes/{nid}/draft", {"plan": "x"}),
            ("POST", f"/notes/{nid}/sign", None),
            ("GET", f"/notes/{nid}/fhir", None),
            ("POST", f"/tasks/{tid}/close", {"status": "done"}),
        ):
            r = await c.request(method, API + path, json=body)
            assert r.status_code == 404, (name, method, path)
    denied = [r for r in audit_rows(world.url, since=head) if r[2] == "denied"]
    assert len(denied) == 10
    assert {r[4] for r in denied} == {"p1"}
    patient = new_client()
    await sign_in(patient, world["pu1"], T0)
    assert (await patient.get(f"{API}/notes/{nid}")).status_code == 403  # no notes.read for a patient (yet)
    coordinator = await _as(new_client, world, "cc1")
    assert (await coordinator.get(f"{API}/notes/{nid}")).status_code == 200
    r = await coordinator.put(f"{API}/notes/{nid}/draft", json={"plan": "x"})
    assert (r.status_code, r.json()["code"]) == (403, "role")
    client.headers.pop("x-csrf-token")
    r = await client.post(f"{API}/notes/{nid}/sign")
    assert (r.status_code, r.json()["code"]) == (403, "csrf")


async def test_the_note_pages(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    assert 'href="/patients/p1/notes"' in (await client.get("/patients/p1")).text
    nid = (await client.post(f"{API}/patients/p1/notes", json={})).json()["note_id"]
    listing = await client.get("/patients/p1/notes")
    assert f'href="/notes/{nid}"' in listing.text
    assert 'data-action="note-start"' in listing.text
    page = (await client.get(f"/notes/{nid}")).text
    assert 'data-action="note-sign"' in page
    assert "readonly" not in page
    await client.put(f"{API}/notes/{nid}/draft", json={"assessment": "Stable", "plan": "Continue"})
    await client.post(f"{API}/notes/{nid}/sign")
    page = (await client.get(f"/notes/{nid}")).text
    assert 'data-action="note-sign"' not in page
    assert page.count("readonly") == 4
    assert 'id="amend-form"' in page
    head = audit_head(world.url)
    assert (await client.get("/notes/00000000-0000-4000-8000-000000000000")).status_code == 404
    assert [r[2] for r in audit_rows(world.url, since=head)] == ["denied"]
